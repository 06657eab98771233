"""Tracing with the SDK's in-memory exporter: the messaging and HTTP attributes, the process span's
link (or parent) to the context taken from Kafka headers and the context given to the outputs, log
lines with trace ids, and nothing at all when it is off. The OTEL_* variables are passed to
``configure_tracing`` as a mapping, never set in the process environment."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, StatusCode

from consumer import __version__
from consumer.config import load_settings
from consumer.errors import ConfigError
from consumer.telemetry import tracing
from consumer.telemetry.logging import JsonFormatter
from moderation_devtools.otlp import OtlpGrpcReceiver, OtlpReceiver

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"


@contextmanager
def configured(
    environ: dict[str, str], parent: tracing.ProcessSpanParent = "link"
) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(
        SimpleSpanProcessor(exporter), environ=environ, process_span_parent=parent
    )
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on with every OTEL_* variable unset: the defaults (a process span links)."""
    with configured({}) as exporter:
        yield exporter


@pytest.fixture
def child_spans() -> Iterator[InMemorySpanExporter]:
    with configured({}, "child") as exporter:
        yield exporter


def process(headers: list[tuple[str, bytes]] | None) -> dict[str, bytes]:
    """One record through the process span, a check and an attempt; the outputs' headers."""
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
        assert out is not None
        return {k: v for k, v in out if isinstance(v, bytes)}
    finally:
        context.detach(token)
        span.end()


def test_a_record_s_process_span_links_to_the_producer_s_context_in_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    out = process([("traceparent", TRACEPARENT.encode()), ("other", b"x")])
    by_name = {s.name: s for s in spans.get_finished_spans()}
    record, check, client = by_name["process uploads"], by_name["check visual"], by_name["POST"]
    assert record.parent is None  # a root: sampled on its own, not by the producer's decision
    (link,) = record.links
    assert format(link.context.trace_id, "032x") == UPSTREAM_TRACE
    assert format(link.context.span_id, "016x") == UPSTREAM_SPAN and link.context.is_remote
    trace_id = format(record.context.trace_id, "032x")
    assert trace_id != UPSTREAM_TRACE
    assert {format(s.context.trace_id, "032x") for s in (check, client)} == {trace_id}
    assert check.parent is not None and check.parent.span_id == record.context.span_id
    # the outputs continue the process span's trace, not the producer's
    assert out["traceparent"].decode().split("-")[1:3] == [trace_id, format(record.context.span_id, "016x")]


def test_a_record_is_processed_in_the_trace_its_producer_started_when_parenting_is_chosen(
    child_spans: InMemorySpanExporter,
) -> None:
    out = process([("traceparent", TRACEPARENT.encode()), ("other", b"x")])
    assert out["traceparent"].startswith(f"00-{UPSTREAM_TRACE}-".encode())
    by_name = {s.name: s for s in child_spans.get_finished_spans()}
    record, check, client = by_name["process uploads"], by_name["check visual"], by_name["POST"]
    assert record.kind is SpanKind.CONSUMER and client.kind is SpanKind.CLIENT
    assert record.parent is not None and format(record.parent.span_id, "016x") == UPSTREAM_SPAN
    assert not record.links
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
    assert attributes["server.port"] == 443
    assert attributes["url.full"] == "https://api.thehive.ai:443/api/v3/task/sync?sig=REDACTED"
    assert "s3cret" not in str(attributes)


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


def test_off_without_an_endpoint_or_when_disabled() -> None:
    assert not tracing.configure_tracing(environ={}) and not tracing.enabled()
    assert not tracing.configure_tracing(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": ""})  # empty: unset
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    for disabled in ("true", "TRUE", " True "):
        assert not tracing.configure_tracing(environ={**endpoint, "OTEL_SDK_DISABLED": disabled})
        assert not tracing.enabled()
    try:
        assert tracing.configure_tracing(environ={**endpoint, "OTEL_SDK_DISABLED": "false"})
    finally:
        tracing.shutdown_tracing()


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


def test_a_trace_the_sampler_drops_makes_no_child_spans_but_still_propagates() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(
        SimpleSpanProcessor(exporter), environ={"OTEL_TRACES_SAMPLER": "always_off"}
    )
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


def test_the_process_span_parent_setting_takes_link_or_child_only() -> None:
    assert load_settings().tracing.process_span_parent == "link"
    assert load_settings(tracing={"process_span_parent": "child"}).tracing.process_span_parent == "child"
    with pytest.raises(ConfigError, match=r"tracing.process_span_parent"):
        load_settings(tracing={"process_span_parent": "parent"})


def test_a_linked_record_without_a_context_starts_a_trace_and_links_nothing(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.check_span("visual", "hive"):  # even inside another span, a record starts afresh
        started = tracing.start_process("uploads", 0, 1, None, [("traceparent", b"garbage")], "g")
        assert started is not None
        context.detach(started[1])
        started[0].end()
    record = next(s for s in spans.get_finished_spans() if s.name == "process uploads")
    assert record.parent is None and not record.links


def test_the_record_s_baggage_reaches_the_outputs_whether_linked_or_parented() -> None:
    headers = [("traceparent", TRACEPARENT.encode()), ("baggage", b"tenant=t-1,tier=gold")]
    for parent in ("link", "child"):
        with configured({}, parent):
            assert process(headers)["baggage"] == b"tenant=t-1,tier=gold"
    with configured({"OTEL_PROPAGATORS": "tracecontext"}):  # baggage not configured: not passed on
        assert "baggage" not in process(headers)


B3_TRACE, B3_SPAN = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"


def test_b3_single_header_context_is_linked_and_the_outputs_carry_b3() -> None:
    with configured({"OTEL_PROPAGATORS": "b3"}) as exporter:
        out = process([("b3", f"{B3_TRACE}-{B3_SPAN}-1".encode()), ("traceparent", TRACEPARENT.encode())])
        record = next(s for s in exporter.get_finished_spans() if s.name == "process uploads")
    (link,) = record.links  # the B3 context; the traceparent is not read
    assert (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")) == (
        B3_TRACE,
        B3_SPAN,
    )
    assert set(out) == {"b3"} and out["b3"].decode().startswith(format(record.context.trace_id, "032x"))


def test_b3multi_and_tracecontext_together() -> None:
    headers = [("X-B3-TraceId", B3_TRACE.encode()), ("X-B3-SpanId", B3_SPAN.encode()), ("X-B3-Sampled", b"1")]
    with configured({"OTEL_PROPAGATORS": "tracecontext, b3multi"}, "child") as exporter:
        out = process(headers)  # read whatever the case of their names
        record = next(s for s in exporter.get_finished_spans() if s.name == "process uploads")
    assert record.parent is not None and format(record.parent.span_id, "016x") == B3_SPAN
    assert {"traceparent", "x-b3-traceid", "x-b3-spanid"} <= set(out)
    assert out["x-b3-traceid"] == B3_TRACE.encode()


def test_propagators_none_carries_no_context_and_the_choice_holds_when_tracing_is_off() -> None:
    with configured({"OTEL_PROPAGATORS": "none"}) as exporter:
        started = tracing.start_process("uploads", 0, 1, None, [("traceparent", TRACEPARENT.encode())], "g")
        assert started is not None
        assert tracing.output_headers(None) is None
        context.detach(started[1])
        started[0].end()
        assert exporter.get_finished_spans()[0].links == ()
    try:  # off: the input's B3 context passed on through the configured propagator
        assert not tracing.configure_tracing(environ={"OTEL_PROPAGATORS": "b3"})
        b3 = f"{B3_TRACE}-{B3_SPAN}-1".encode()
        assert tracing.output_headers([("b3", b3), ("traceparent", TRACEPARENT.encode())]) == [("b3", b3)]
    finally:
        tracing.shutdown_tracing()


def test_an_unknown_propagator_is_refused_naming_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match="OTEL_PROPAGATORS: unknown propagator 'jaeger'") as refused:
        tracing.configure_tracing(environ={"OTEL_PROPAGATORS": "tracecontext,jaeger"})
    assert "tracecontext" in str(refused.value) and "baggage" in str(refused.value)
    with pytest.raises(ConfigError, match=r"moderation-consumer\[b3\]"):
        tracing.load_propagator({"OTEL_PROPAGATORS": "b3single"})
    assert not tracing.enabled()


def test_service_name_precedence_is_the_specification_s() -> None:
    def resource(environ: dict[str, str]) -> dict[str, object]:
        return dict(tracing.build_resource(environ).attributes)

    ours = resource({})
    assert ours["service.name"] == "moderation-consumer" and ours["service.version"] == __version__
    assert ours["telemetry.sdk.name"] == "opentelemetry"  # the SDK's own detection still runs
    attributes = "service.name=uploads-moderation,deployment.environment.name=prod%20eu,service.version=9"
    given = resource({"OTEL_RESOURCE_ATTRIBUTES": attributes})
    assert given["service.name"] == "uploads-moderation" and given["service.version"] == "9"
    assert given["deployment.environment.name"] == "prod eu"  # percent-decoded, as the SDK does
    both = resource({"OTEL_RESOURCE_ATTRIBUTES": attributes, "OTEL_SERVICE_NAME": "moderation-eu"})
    assert both["service.name"] == "moderation-eu" and both["deployment.environment.name"] == "prod eu"
    assert resource({"OTEL_SERVICE_NAME": ""})["service.name"] == "moderation-consumer"
    assert resource({"OTEL_RESOURCE_ATTRIBUTES": "bad,k=v"})["k"] == "v"  # a pair without "=" skipped


def test_the_sampler_variables() -> None:
    assert tracing.build_sampler({}) is DEFAULT_ON
    assert tracing.build_sampler({"OTEL_TRACES_SAMPLER": "always_off"}) is ALWAYS_OFF
    ratio = tracing.build_sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25
    parented = tracing.build_sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"})
    assert isinstance(parented, ParentBasedTraceIdRatio) and "1.0" in parented.get_description()
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER: unknown sampler 'ratio'"):
        tracing.build_sampler({"OTEL_TRACES_SAMPLER": "ratio"})
    for bad in ("half", "1.5", "-0.1", "nan"):
        with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
            tracing.build_sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": bad})


def test_the_exporter_protocol_and_endpoint_variables() -> None:
    assert tracing.build_exporter({}) is None  # no endpoint: nothing exported
    http = tracing.build_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert isinstance(http, HttpExporter) and http._endpoint == "http://collector:4318/v1/traces"
    signal = tracing.build_exporter(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b/t"}
    )
    assert isinstance(signal, HttpExporter) and signal._endpoint == "http://b/t"
    grpc = tracing.build_exporter(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    )
    assert isinstance(grpc, GrpcExporter)
    # the signal's protocol wins over the general one
    traces_http = tracing.build_exporter(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        }
    )
    assert isinstance(traces_http, HttpExporter)
    for exporter in (http, signal, grpc, traces_http):
        exporter.shutdown()
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL: http/json is not implemented"):
        tracing.build_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unknown protocol 'thrift'"):
        tracing.configure_tracing(environ={"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"})


def test_grpc_without_its_extra_is_refused_with_the_extra_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gRPC exporter as a Python without the ``grpc`` extra sees it: absent (a None entry in
    sys.modules makes its import fail; nothing of ours is replaced)."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    with pytest.raises(
        ConfigError, match=r"grpc needs the optional extra: pip install 'moderation-consumer\[grpc\]'"
    ):
        tracing.configure_tracing(environ=environ)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_reach_a_real_otlp_receiver_with_the_resource(protocol: str) -> None:
    receiver: OtlpReceiver | OtlpGrpcReceiver = (
        OtlpReceiver() if protocol == "http/protobuf" else OtlpGrpcReceiver()
    )
    with receiver:
        environ = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,service.instance.id=pod-1",
        }
        assert tracing.configure_tracing(environ=environ)
        try:
            with tracing.check_span("visual", "hive"):
                pass
        finally:
            tracing.shutdown_tracing()  # flushes the batch processor
        (received,) = receiver.spans()
    assert received.name == "check visual"
    assert received.resource["service.name"] == "from-attributes"
    assert received.resource["service.instance.id"] == "pod-1"
    assert received.resource["service.version"] == __version__


@pytest.mark.parametrize(
    ("url", "full", "port"),
    [
        ("https://api.example.com/v1/x", "https://api.example.com/v1/x", 443),
        ("http://media.example.com/a.png", "http://media.example.com/a.png", 80),
        ("http://127.0.0.1:8089/p?x=1#frag", "http://127.0.0.1:8089/p?x=REDACTED", 8089),
        (
            "https://user:pa55@bucket.example.com/o.jpg?X-Amz-Signature=abc&X-Amz-Expires=60",
            "https://REDACTED:REDACTED@bucket.example.com/o.jpg?X-Amz-Signature=REDACTED&X-Amz-Expires=REDACTED",
            443,
        ),
        ("https://t0ken@h.example.com/?bare&k=", "https://REDACTED@h.example.com/?REDACTED&k=REDACTED", 443),
        ("http://[::1]:9000/p", "http://[::1]:9000/p", 9000),
    ],
)
def test_client_spans_carry_url_full_redacted_and_server_port_always(
    spans: InMemorySpanExporter, url: str, full: str, port: int
) -> None:
    with tracing.client_span("GET", url, 0):
        pass
    (client,) = spans.get_finished_spans()
    attributes = dict(client.attributes or {})
    assert attributes["url.full"] == full and attributes["server.port"] == port
    assert not any(secret in str(attributes) for secret in ("pa55", "t0ken", "abc", "frag"))


def test_the_process_span_is_made_current_with_the_record_s_context(spans: InMemorySpanExporter) -> None:
    started = tracing.start_process("uploads", 0, 1, None, [("traceparent", TRACEPARENT.encode())], "g")
    assert started is not None
    try:
        assert trace.get_current_span() is started[0]
    finally:
        context.detach(started[1])
        started[0].end()


def test_a_sender_s_hostile_baggage_and_b3_headers_are_bounded_dropped_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    many = b",".join(b"k%d=v" % i for i in range(500))  # under 8192 bytes, over 180 entries
    for environ in ({}, {"OTEL_PROPAGATORS": "tracecontext,baggage,b3"}):
        assert not tracing.configure_tracing(environ=environ)  # off: the input's context passed on
        try:
            for baggage in (b"k=" + b"v" * 1_000_000, b"\xff\xfe=;;,,=", b"k=v;" + b"p" * 5000):
                out = dict(
                    tracing.output_headers([("traceparent", TRACEPARENT.encode()), ("baggage", baggage)])
                    or []
                )
                assert "baggage" not in out
            out = dict(
                tracing.output_headers([("traceparent", TRACEPARENT.encode()), ("baggage", many)]) or []
            )
            assert out["baggage"].count(b",") == 179  # the first 180 entries
            for b3 in (b"f" * 1_000_000, b"-".join([b"x" * 32] * 5), b"\xff\xfe"):
                assert tracing.output_headers([("b3", b3)]) is None
        finally:
            tracing.shutdown_tracing()
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
