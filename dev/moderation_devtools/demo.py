"""``make demo`` (``python -m moderation_devtools.demo``): a real broker, the simulator, sample
uploads, the consumer, and a verdict table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from consumer.config import load_settings
from consumer.core.records import Decision, MediaType, ModerationVerdict, UploadEvent
from consumer.kafka import ensure_topics
from consumer.schema_registry import codec_for
from consumer.settings_sections import KafkaSettings
from moderation_devtools import REPO
from moderation_devtools.broker import LocalKafka, free_port
from moderation_devtools.otlp import OtlpReceiver
from moderation_devtools.registry import LocalRegistry
from moderation_devtools.samples import cropped, image_bytes, make_gif, make_image, make_video, reencoded
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    produce_uploads,
    read_dead_letters,
    read_verdicts,
    upload,
)

__all__ = ["run_demo"]

EXAMPLE_READER = REPO / "examples" / "verdict_reader.py"

BANNED_SEED, CSAM_SEED, NSFW_SEED, GIF_SEED, VIDEO_CSAM_SEED = 101, 202, 303, 404, 505
GIF_SIZE, VIDEO_SIZE = (240, 180), (320, 240)


@dataclass(frozen=True)
class Sample:
    label: str
    event: UploadEvent
    expected: Decision


def _samples(sim: SimulatorProcess) -> list[Sample]:
    banned, csam_listed, nsfw = make_image(BANNED_SEED), make_image(CSAM_SEED), make_image(NSFW_SEED)
    sim.index_add(image_bytes(banned), "banned: known scam image, case 4411")
    sim.add_csam_image(image_bytes(csam_listed))
    sim.force_scores({"general_nsfw": 0.97}, media=image_bytes(nsfw))
    gif_scene = make_image(GIF_SEED, GIF_SIZE)
    sim.force_scores({"general_nsfw": 0.95}, media=image_bytes(gif_scene))
    sim.add_csam_image(image_bytes(make_image(VIDEO_CSAM_SEED, VIDEO_SIZE)))

    benign_png = image_bytes(make_image(1))
    benign_url = sim.host_media("holiday.jpg", image_bytes(make_image(2), "JPEG"), "image/jpeg")
    cropped_url = sim.host_media("banned-crop.png", cropped(banned), "image/png")
    img, txt = MediaType.IMAGE, MediaType.TEXT
    return [
        Sample(
            "benign photo (inline PNG)",
            upload(img, data=benign_png, content_type="image/png"),
            Decision.ALLOW,
        ),
        Sample(
            "benign photo (by URL)", upload(img, url=benign_url, content_type="image/jpeg"), Decision.ALLOW
        ),
        Sample(
            "benign photo (inline JPEG)",
            upload(img, data=image_bytes(make_image(3), "JPEG"), content_type="image/jpeg"),
            Decision.ALLOW,
        ),
        Sample(
            "same photo again (cache)", upload(img, data=benign_png, content_type="image/png"), Decision.ALLOW
        ),
        Sample(
            "banned image, resized JPEG",
            upload(img, data=reencoded(banned), content_type="image/jpeg"),
            Decision.BLOCK,
        ),
        Sample(
            "banned image, cropped (URL)",
            upload(img, url=cropped_url, content_type="image/png"),
            Decision.BLOCK,
        ),
        Sample(
            "hash-list image, resized",
            upload(img, data=reencoded(csam_listed), content_type="image/jpeg"),
            Decision.ESCALATE,
        ),
        Sample(
            "explicit image",
            upload(img, data=reencoded(nsfw, 0.8), content_type="image/jpeg"),
            Decision.BLOCK,
        ),
        Sample(
            "animated GIF, explicit frames",
            upload(MediaType.GIF, data=make_gif([11, GIF_SEED, GIF_SEED, 12]), content_type="image/gif"),
            Decision.BLOCK,
        ),
        Sample(
            "short video (4 s)",
            upload(
                MediaType.VIDEO, data=make_video([21, 22, 23, 24], size=VIDEO_SIZE), content_type="video/mp4"
            ),
            Decision.ALLOW,
        ),
        Sample(
            "video, hash-listed scene",
            upload(
                MediaType.VIDEO,
                data=make_video([25, VIDEO_CSAM_SEED, 26], size=VIDEO_SIZE),
                content_type="video/mp4",
            ),
            Decision.ESCALATE,
        ),
        Sample("friendly text", upload(txt, text="Lovely sunset at the beach today!"), Decision.ALLOW),
        Sample("threatening text", upload(txt, text="I am going to kill you tomorrow"), Decision.BLOCK),
        Sample("spam text", upload(txt, text="Buy now!!! free money, click here"), Decision.REVIEW),
    ]


def _reasons(v: ModerationVerdict) -> str:
    parts = []
    for r in v.reasons:
        text = f"{r.check}:{r.label}"
        if r.score is not None:
            text += f" {r.score:.2f}"
        if r.detail and r.label in ("index_match", "hash_match"):
            text += f" ({r.detail})"
        spans = [
            x for x in (v.classification.flagged_ranges if v.classification else ()) if x.label == r.label
        ]
        spans += list(v.csam.scenes if v.csam and r.label == "hash_match" else ())
        if spans:
            text += " at " + ", ".join(f"{x.start_seconds:g}-{x.end_seconds:g}s" for x in spans)
        parts.append(text)
    return "; ".join(parts) or "-"


def _checks_ms(v: ModerationVerdict) -> float:
    """Time spent in checks: CSAM first, then the slowest of the concurrent ones."""
    first = sum(c.latency_ms for c in v.checks if c.check in ("csam", "text", "cache"))
    rest = max((c.latency_ms for c in v.checks if c.check in ("visual", "similarity")), default=0.0)
    return first + rest


def _table(samples: list[Sample], verdicts: dict[str, ModerationVerdict]) -> tuple[str, int]:
    rows = [("upload", "sample", "expected", "decision", "checks", "reasons")]
    wrong = 0
    for s in samples:
        v = verdicts.get(s.event.upload_id)
        decision = v.decision.value if v else "MISSING"
        latency = f"{_checks_ms(v):.0f} ms" if v else "-"
        ok = v is not None and v.decision is s.expected
        wrong += not ok
        rows.append(
            (
                s.event.upload_id,
                s.label,
                s.expected.value,
                decision + ("" if ok else "  <-- !"),
                latency,
                _reasons(v) if v else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if n == 0:
            lines.append("-" * (sum(widths) + 2 * len(widths) + 7))
    return "\n".join(lines), wrong


def _example_reader(bootstrap: str, registry_url: str, topic: str, count: int) -> None:
    """The verdicts again, read by the example a downstream service copies (confluent-kafka alone)."""
    if not EXAMPLE_READER.exists():  # an installed package has no examples/
        return
    print(f"\nthe same verdicts read by {EXAMPLE_READER.relative_to(REPO)}:", flush=True)
    command = [sys.executable, str(EXAMPLE_READER), "--bootstrap", bootstrap, "--registry", registry_url]
    command += ["--topic", topic, "--group", "demo-reader", "--max", str(count), "--idle-timeout", "20"]
    subprocess.run(command, timeout=120, check=False)


def _save_scrape(url: str, path: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            path.write_bytes(answer.read())
    except OSError as exc:
        print(f"could not scrape {url}: {exc}", file=sys.stderr)


def _upload_service_headers(receiver: OtlpReceiver) -> list[tuple[str, str | bytes | None]]:
    """What an upload service puts on its records: the W3C context of its PRODUCER span (one send
    of the whole batch here), exported to the demo's receiver like the consumer's spans."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(resource=Resource.create({"service.name": "upload-service"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    carrier: dict[str, str] = {}
    with provider.get_tracer("demo").start_as_current_span("send uploads", kind=SpanKind.PRODUCER):
        TraceContextTextMapPropagator().inject(carrier)
    provider.shutdown()
    return [(k, v.encode()) for k, v in carrier.items()]


def _print_trace(
    samples: list[Sample], verdicts: dict[str, ModerationVerdict], receiver: OtlpReceiver, spans_file: Path
) -> None:
    """The trace of the verdict with the most spans, as a tree (a duplicate upload's content checks
    run once, in the trace of whichever copy started them), each span's links followed to the span
    they name (the process span links to the upload service's producer span, in its own trace)."""
    traced = [(s, verdicts[s.event.upload_id]) for s in samples if s.event.upload_id in verdicts]
    traced = [(s, v) for s, v in traced if v.trace_id]
    if not traced:
        print("no verdict carries a trace id: tracing was off", file=sys.stderr)
        return
    sample, verdict = max(traced, key=lambda sv: len(receiver.spans(sv[1].trace_id)))
    spans = sorted(receiver.spans(verdict.trace_id), key=lambda s: s.start_ns)
    known = {(s.trace_id, s.span_id): s for s in receiver.spans()}
    print(f"trace of '{sample.label}': id {verdict.trace_id} (the verdict's trace_id), {len(spans)} spans:")
    depth: dict[str, int] = {}
    for span in spans:
        depth[span.span_id] = depth.get(span.parent_span_id, -1) + 1
        took = (span.end_ns - span.start_ns) / 1e6
        indent = "  " * depth[span.span_id]
        print(f"  {indent}{span.name} ({span.kind.lower()}, {took:.1f} ms)")
        for trace_id, span_id in span.links:
            linked = known.get((trace_id, span_id))
            what = (
                f"{linked.name} ({linked.kind.lower()}, {linked.resource.get('service.name', '?')})"
                if linked is not None
                else f"span {span_id}"
            )
            print(f"  {indent}  -> links to {what} in trace {trace_id}")
    print(f"every span of the run, one JSON object per line: {spans_file}")


def run_demo() -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="moderation-demo-"))
    print(f"demo workspace: {workdir}", flush=True)
    kafka = LocalKafka(workdir / "kafka")
    registry = LocalRegistry(workdir / "registry")
    sim = SimulatorProcess(latency_median_ms=40, latency_p99_ms=150, log_path=workdir / "simulator.log")
    receiver = OtlpReceiver(workdir / "spans.jsonl")
    health_port = free_port()
    consumer: ConsumerProcess | None = None
    try:
        with ThreadPoolExecutor(1) as pool:
            print("starting Kafka and the schema registry (first run fetches them with Maven)...", flush=True)
            registry_url = pool.submit(registry.start)
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka.start()
            print(f"  broker at {bootstrap}", flush=True)
            print(f"  schema registry (Apicurio) at {registry_url.result()}", flush=True)
        sim.start()
        print(f"  simulator at {sim.url} (latency median 40 ms, p99 150 ms)", flush=True)
        settings = KafkaSettings(bootstrap_servers=bootstrap)
        ensure_topics(
            settings,
            [
                settings.input_topic,
                settings.verdict_topic,
                settings.review_topic,
                settings.escalation_topic,
                settings.dlq_topic,
            ],
            partitions=4,
        )
        # the demo registers the shipped schemas on first use (production: `schemas register`)
        registry_settings = {"url": registry.url, "auto_register": True}
        codec = codec_for(load_settings(schema_registry=registry_settings))
        samples = _samples(sim)
        poison = (b"demo-poison", b'{"upload_id": "written as JSON by mistake"}')
        receiver.start()  # the run's spans, over OTLP/HTTP, into spans.jsonl
        produce_uploads(
            bootstrap,
            settings.input_topic,
            [s.event for s in samples],
            codec=codec,
            raw=[poison],
            headers=_upload_service_headers(receiver),
        )
        print(
            f"  produced {len(samples)} sample uploads (Confluent wire format) and 1 record that is not"
            f" Avro to '{settings.input_topic}'",
            flush=True,
        )
        env = consumer_env(
            bootstrap,
            sim.url,
            group="demo",
            MODERATION_SCHEMA_REGISTRY__URL=registry.url,
            MODERATION_SCHEMA_REGISTRY__AUTO_REGISTER="true",
            MODERATION_HEALTH__PORT=str(health_port),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_SERVICE_NAME="moderation-consumer",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        consumer = ConsumerProcess(env, log_path=workdir / "consumer.log").start()
        print("  consumer running (python -m consumer run); waiting for verdicts...\n", flush=True)
        wanted = {s.event.upload_id for s in samples}
        found = read_verdicts(bootstrap, settings.verdict_topic, wanted, timeout=120, codec=codec)
        verdicts = {v.upload_id: v for v in found}
        table, wrong = _table(samples, verdicts)
        print(table)
        letters = read_dead_letters(bootstrap, settings.dlq_topic, 1, timeout=60, codec=codec)
        for letter, _ in letters:
            print(
                f"\ndead letter on '{settings.dlq_topic}': {letter.source_topic}[{letter.source_partition}]"
                f"@{letter.source_offset} key={letter.original_key!r} {letter.failure.error_class}:"
                f" {letter.failure.message}\n  (fix, then: python -m consumer dlq replay --error-class"
                f" {letter.failure.error_class})"
            )
        if not letters:
            print("the record that is not Avro never reached the dead letter topic", file=sys.stderr)
            wrong += 1
        _example_reader(bootstrap, registry.url, settings.verdict_topic, len(verdicts))
        metrics_url = f"http://127.0.0.1:{health_port}/metrics"
        _save_scrape(metrics_url, workdir / "metrics.txt")
        consumer.terminate()  # its last spans are exported as it stops
        consumer = None
        receiver.stop()
        print(f"\nmetrics: {metrics_url} while the consumer runs; its last scrape: {workdir / 'metrics.txt'}")
        _print_trace(samples, verdicts, receiver, workdir / "spans.jsonl")
        print(
            f"\n{len(verdicts)} verdicts for {len(samples)} uploads in {time.monotonic() - started:.1f}s; "
            f"consumer log: {workdir / 'consumer.log'}"
        )
        codec.close()
        if wrong:
            print(f"{wrong} verdict(s) differ from what the demo expects", file=sys.stderr)
            return 1
        return 0
    finally:
        if consumer is not None:
            consumer.terminate()
        sim.stop()
        receiver.stop()
        registry.stop()
        kafka.stop()
        shutil.rmtree(workdir / "kafka", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_demo())
