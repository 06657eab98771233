"""Traces through the real OTLP exporters to a local receiver that decodes the official protobufs:
the record's process span links to the upload service's producer span (or, as an option, is its
child: one trace from the producer through the checks to the verdict), over OTLP/HTTP and gRPC, and
an async video whose callback reaches another process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from confluent_kafka import Message
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from consumer import __version__
from consumer.core.records import MediaType, ModerationVerdict, UploadEvent
from consumer.serde import AvroCodec
from moderation_devtools.broker import free_port
from moderation_devtools.otlp import OtlpGrpcReceiver, OtlpReceiver, ReceivedSpan
from moderation_devtools.samples import image_bytes, make_image, make_video
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    json_log_lines,
    produce_uploads,
    upload,
    wait_until,
)

from .conftest import ReadTopic, Topics

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


def send_with_trace(receiver: OtlpReceiver, bootstrap: str, topic: str, item: UploadEvent) -> ReceivedSpan:
    """The upload service's side: a PRODUCER span, its context in the record's headers."""
    provider = TracerProvider(resource=Resource.create({"service.name": "upload-service"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    carrier: dict[str, str] = {}
    with provider.get_tracer("upload-service").start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER):
        TraceContextTextMapPropagator().inject(carrier)
    provider.shutdown()
    produce_uploads(bootstrap, topic, [item], headers=[("traceparent", carrier["traceparent"].encode())])
    trace_id = carrier["traceparent"].split("-")[1]
    (producer,) = receiver.spans(trace_id)
    return producer


def verdict_message(
    read_topic: ReadTopic, topic: str, upload_id: str
) -> tuple[ModerationVerdict, dict[str, bytes]]:
    codec = AvroCodec()

    def decode(msg: Message) -> tuple[ModerationVerdict, dict[str, bytes]]:
        return ModerationVerdict.from_avro(codec.decode(msg.value(), "ModerationVerdict")), headers_of(msg)

    found = read_topic(
        topic, decode=decode, until=lambda read: read[-1][0].upload_id == upload_id, timeout=120
    )
    assert found and found[-1][0].upload_id == upload_id, f"no verdict for {upload_id}"
    return found[-1]


def headers_of(msg: Message) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or []) if v is not None}


def tracing_env(receiver: OtlpReceiver | OtlpGrpcReceiver, instance: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={instance}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def spans_named(spans: list[ReceivedSpan], prefix: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


@pytest.mark.parametrize(
    ("parent", "protocol"), [("link", "http/protobuf"), ("child", "http/protobuf"), ("link", "grpc")]
)
def test_a_record_s_trace_links_to_or_continues_the_upload_producer_s_through_the_checks_to_the_verdict(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    receiver: OtlpReceiver,
    read_topic: ReadTopic,
    tmp_path: Path,
    parent: str,
    protocol: str,
) -> None:
    """The producer's span goes to the HTTP receiver; the consumer's over ``protocol`` (to a gRPC
    receiver for grpc)."""
    topics = make_topics()
    item = upload(MediaType.IMAGE, data=image_bytes(make_image(4101)), content_type="image/png")
    producer = send_with_trace(receiver, kafka_bootstrap, topics.input, item)
    with ExitStack() as stack:
        consumers = stack.enter_context(OtlpGrpcReceiver()) if protocol == "grpc" else receiver
        env = consumer_env(
            kafka_bootstrap,
            sim.url,
            group=topics.group,
            topics=topics.env(),
            MODERATION_KAFKA__CREATE_TOPICS="false",
            MODERATION_TRACING__PROCESS_SPAN_PARENT=parent,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            **tracing_env(consumers, "a"),
        )
        log = tmp_path / "consumer.log"
        process = ConsumerProcess(env, log_path=log).start()
        try:
            verdict, headers = verdict_message(read_topic, topics.verdicts, item.upload_id)
            trace_id = verdict.trace_id
            assert trace_id

            def complete() -> bool:
                spans = consumers.spans(trace_id)
                return len(spans_named(spans, "check ")) >= 3 and len(spans_named(spans, "POST")) >= 3

            assert wait_until(complete, 60), [s.name for s in consumers.spans(trace_id)]
        finally:
            process.terminate()
        spans = consumers.spans(trace_id)
    (record,) = spans_named(spans, f"process {topics.input}")
    if parent == "link":  # a trace of its own, linked to the upload's
        assert trace_id != producer.trace_id and not record.parent_span_id
        assert record.links == [(producer.trace_id, producer.span_id)]
    else:  # the upload's trace continues
        assert trace_id == producer.trace_id and record.parent_span_id == producer.span_id
        assert not record.links
    assert record.kind == "CONSUMER"
    assert record.resource["service.name"] == "moderation-consumer"  # our default
    assert record.resource["service.version"] == __version__
    assert record.attributes["messaging.system"] == "kafka"
    assert record.attributes["messaging.destination.name"] == topics.input
    assert record.attributes["messaging.consumer.group.name"] == topics.group
    assert record.attributes["moderation.upload_id"] == item.upload_id
    assert record.attributes["moderation.decision"] == verdict.decision.value
    checks = spans_named(spans, "check ")
    assert {s.name for s in checks} == {"check csam", "check visual", "check similarity"}
    assert all(s.parent_span_id == record.span_id for s in checks)
    attempts = spans_named(spans, "POST")
    assert {s.parent_span_id for s in attempts} <= {s.span_id for s in checks}
    for attempt in attempts:
        assert attempt.kind == "CLIENT" and attempt.attributes["server.address"] == "127.0.0.1"
        assert attempt.attributes["server.port"] == sim.port
        assert attempt.attributes["url.full"].startswith(f"{sim.url}/")
        assert attempt.attributes["http.response.status_code"] == 200
        assert not any(
            "key" in str(v).lower() or "token" in str(v).lower() for v in attempt.attributes.values()
        )
    # the verdict continues the process span's trace downstream: its header and its trace_id field
    version, header_trace, header_parent, flags = headers["traceparent"].decode().split("-")
    assert (version, header_trace, header_parent) == ("00", trace_id, record.span_id) and int(flags, 16) & 1
    verdict_logs = [line for line in json_log_lines(log) if line.get("msg") == "verdict"]
    assert verdict_logs and verdict_logs[0]["trace_id"] == trace_id
    assert verdict_logs[0]["span_id"] == record.span_id


def test_an_async_video_trace_survives_the_callback_relay_to_another_process(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    receiver: OtlpReceiver,
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    """Each process advertises the other's callback receiver, so whichever owns the video, its
    callbacks arrive at the other process and come back through the relay topic."""
    topics = make_topics(input_partitions=1, other_partitions=1)
    ports = {"a": free_port(), "b": free_port()}
    processes: list[ConsumerProcess] = []
    logs = {name: tmp_path / f"{name}.log" for name in ports}
    try:
        for name, other in (("a", "b"), ("b", "a")):
            env = consumer_env(
                kafka_bootstrap,
                sim.url,
                group=topics.group,
                topics=topics.env(),
                MODERATION_KAFKA__CREATE_TOPICS="false",
                MODERATION_CALLBACKS__PORT=str(ports[name]),
                MODERATION_CALLBACKS__PUBLIC_URL=f"http://127.0.0.1:{ports[other]}",
                MODERATION_CALLBACKS__POLL_AFTER_S="600",
                **tracing_env(receiver, name),
            )
            processes.append(ConsumerProcess(env, log_path=logs[name]).start())
        listening = "callback receiver listening"
        assert wait_until(
            lambda: all(any(x.get("msg") == listening for x in json_log_lines(p)) for p in logs.values()), 90
        )
        video = upload(
            MediaType.VIDEO, data=make_video([4201, 4202], size=(320, 240)), content_type="video/mp4"
        )
        producer = send_with_trace(receiver, kafka_bootstrap, topics.input, video)
        verdict, _ = verdict_message(read_topic, topics.verdicts, video.upload_id)
        trace_id = verdict.trace_id  # the process span's own trace, linked to the producer's
        assert trace_id and trace_id != producer.trace_id

        def relayed() -> bool:
            spans = receiver.spans(trace_id)
            return len(spans_named(spans, f"process {topics.callbacks}")) >= 2

        assert wait_until(relayed, 60), [s.name for s in receiver.spans(trace_id)]
    finally:
        for process in processes:
            process.terminate()
    spans = receiver.spans(trace_id)
    by_id = {s.span_id: s for s in spans}
    (record,) = spans_named(spans, f"process {topics.input}")
    assert record.links == [(producer.trace_id, producer.span_id)]
    owner = record.resource["service.instance.id"]
    served = spans_named(spans, "POST /callbacks/{token}")
    assert len(served) == 2  # csam and visual, each an async task
    for server in served:
        assert server.kind == "SERVER" and server.resource["service.instance.id"] != owner
        check = by_id[server.parent_span_id]
        assert check.name in ("check csam", "check visual") and check.parent_span_id == record.span_id
    for relay in spans_named(spans, f"process {topics.callbacks}"):
        assert relay.resource["service.instance.id"] == owner  # back where the task waits
        assert by_id[relay.parent_span_id] in served
