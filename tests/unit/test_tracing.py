"""Tracing with the SDK's in-memory exporter: the messaging and HTTP attributes, the context taken
from and given to Kafka headers, log lines with trace ids, and nothing at all when it is off."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import context
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from consumer.telemetry import tracing
from consumer.telemetry.logging import JsonFormatter

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(SimpleSpanProcessor(exporter))
    yield exporter
    tracing.shutdown_tracing()


def process(headers: list[tuple[str, bytes]] | None) -> None:
    started = tracing.start_process("uploads", 3, 42, b"up-1", headers, "moderation")
    assert started is not None
    span, token = started
    try:
        tracing.annotate(upload_id="up-1", tenant_id="t-1", decision="ALLOW")
        with (
            tracing.check_span("visual", "hive"),
            tracing.client_span(
                "POST", "https://api.thehive.ai:443/api/v3/task/sync?sig=s3cret", 1
            ) as client,
        ):
            assert client is not None
            client.set_attribute("http.response.status_code", 200)
        out = tracing.output_headers(headers)
        assert out is not None and dict(out)["traceparent"].startswith(f"00-{UPSTREAM_TRACE}-".encode())
    finally:
        context.detach(token)
        span.end()


def test_a_record_is_processed_in_the_trace_its_producer_started(spans: InMemorySpanExporter) -> None:
    process([("traceparent", TRACEPARENT.encode()), ("other", b"x")])
    by_name = {s.name: s for s in spans.get_finished_spans()}
    record, check, client = by_name["process uploads"], by_name["check visual"], by_name["POST"]
    assert record.kind is SpanKind.CONSUMER and client.kind is SpanKind.CLIENT
    assert record.parent is not None and format(record.parent.span_id, "016x") == UPSTREAM_SPAN
    assert {format(s.context.trace_id, "032x") for s in (record, check, client)} == {UPSTREAM_TRACE}
    assert check.parent is not None and check.parent.span_id == record.context.span_id
    assert client.parent is not None and client.parent.span_id == check.context.span_id
    assert dict(record.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "uploads",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 42,
        "messaging.consumer.group.name": "moderation",
        "messaging.kafka.message.key": "up-1",
        "moderation.upload_id": "up-1",
        "moderation.tenant_id": "t-1",
        "moderation.decision": "ALLOW",
    }
    attributes = dict(client.attributes or {})
    assert attributes["http.request.method"] == "POST" and attributes["server.address"] == "api.thehive.ai"
    assert attributes["http.request.resend_count"] == 1 and attributes["http.response.status_code"] == 200
    assert "url.full" not in attributes and "?" not in str(attributes["url.path"])


def test_without_a_traceparent_the_record_starts_a_trace(spans: InMemorySpanExporter) -> None:
    started = tracing.start_process("uploads", 0, 1, None, [("other", b"x")], "g")
    assert started is not None
    span, token = started
    context.detach(token)
    span.end()
    (record,) = spans.get_finished_spans()
    assert record.parent is None and "messaging.kafka.message.key" not in (record.attributes or {})


def test_a_failed_check_and_a_failed_attempt_are_marked(spans: InMemorySpanExporter) -> None:
    with tracing.check_span("csam", "hive") as check:
        with tracing.client_span("POST", "http://h/p", 0) as client:
            tracing.failed("503", client)
        tracing.failed("unavailable", check)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["POST"].status.status_code is StatusCode.ERROR
    assert (by_name["POST"].attributes or {})["error.type"] == "503"
    assert (by_name["check csam"].attributes or {})["error.type"] == "unavailable"


def test_log_lines_carry_the_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    record = logging.makeLogRecord({"msg": "verdict", "levelname": "INFO", "name": "consumer"})
    with tracing.check_span("text", "hive") as span:
        assert span is not None
        line = json.loads(JsonFormatter().format(record))
        assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
        assert line["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in json.loads(JsonFormatter().format(record))  # no span: no ids


def test_a_callback_url_carries_the_trace_and_the_receiver_continues_it(spans: InMemorySpanExporter) -> None:
    with tracing.check_span("visual", "hive") as check:
        assert check is not None
        traceparent = tracing.current_traceparent()
    assert traceparent is not None
    with tracing.server_span("POST /callbacks/{token}", traceparent) as server:
        assert server is not None
        relay_headers = tracing.output_headers(None)
    tracing.relay_received("moderation.callbacks", relay_headers, "task-1")
    by_name = {s.name: s for s in spans.get_finished_spans()}
    served, relayed = by_name["POST /callbacks/{token}"], by_name["process moderation.callbacks"]
    assert served.parent is not None and served.parent.span_id == check.get_span_context().span_id
    assert relayed.parent is not None and relayed.parent.span_id == served.context.span_id
    assert (served.attributes or {})["http.route"] == "/callbacks/{token}"


def test_off_without_an_endpoint_or_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing.configure_tracing() and not tracing.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.configure_tracing() and not tracing.enabled()


def test_when_off_no_span_is_made_and_outputs_pass_the_input_context_on() -> None:
    assert not tracing.enabled()
    assert tracing.start_process("uploads", 0, 1, b"k", [("traceparent", TRACEPARENT.encode())], "g") is None
    assert tracing.output_headers([("traceparent", TRACEPARENT.encode()), ("x", b"y")]) == [
        ("traceparent", TRACEPARENT.encode())
    ]
    assert tracing.output_headers(None) is None and tracing.output_headers([("x", b"y")]) is None
    assert tracing.current_ids() is None and tracing.current_traceparent() is None
    with tracing.check_span("visual", "hive") as span:
        assert span is None


def test_a_sender_s_malformed_or_giant_trace_headers_are_not_copied_to_the_outputs() -> None:
    assert not tracing.enabled()
    assert tracing.output_headers([("traceparent", b"00-" + b"f" * 1_000_000)]) is None
    assert tracing.output_headers([("traceparent", b"\xff\xfe not a traceparent")]) is None
    state = b",".join(b"k%d=v" % i for i in range(10_000))
    out = dict(tracing.output_headers([("traceparent", TRACEPARENT.encode()), ("tracestate", state)]) or [])
    assert out["traceparent"] == TRACEPARENT.encode() and len(out.get("tracestate", b"")) < 4096


def test_a_giant_record_key_is_bounded_in_the_span(spans: InMemorySpanExporter) -> None:
    started = tracing.start_process("uploads", 0, 1, b"k" * 1_000_000, None, "g")
    assert started is not None
    span, token = started
    context.detach(token)
    span.end()
    (record,) = spans.get_finished_spans()
    assert len(str((record.attributes or {})["messaging.kafka.message.key"])) <= 256


def test_a_trace_the_sampler_drops_makes_no_child_spans_but_still_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(SimpleSpanProcessor(exporter))
    try:
        started = tracing.start_process("uploads", 0, 1, b"k", None, "g")
        assert started is not None
        span, token = started
        try:
            assert not span.is_recording() and not tracing.traced()
            with tracing.check_span("visual", "hive") as check:
                assert check is None
            out = dict(tracing.output_headers(None) or [])
            assert not int(out["traceparent"][-2:], 16) & 1  # downstream sees "not sampled"
            assert tracing.current_ids() is not None
        finally:
            context.detach(token)
            span.end()
        assert tracing.traced()  # no record: a span made here is a root, sampled on its own
        assert exporter.get_finished_spans() == ()
    finally:
        tracing.shutdown_tracing()
