"""``make bench``: throughput, CPU, latency and memory of the engine against a baseline (the consumer
an engineer writes in an afternoon: confluent-kafka, aiohttp, a semaphore of as many uploads in
flight as the engine's; ``bench/baseline.py``) draining the same backlog, the Little's-law bound,
the engine with tracing off and at 10 % and 100 % sampling, the framework alone in both framings
(single-object encoding and the Confluent wire format on a local Apicurio registry) and the
broker's own limit, plus a provider outage.

Prints JSON and a table; writes ``bench/results/latest.json``. ``BENCH_UPLOADS`` (default 20000)
sets the backlog, ``BENCH_OUTAGE_S`` (30) the outage, ``BENCH_TRACING`` (1; 0 skips
the tracing runs), ``BENCH_MODES`` (1; 0 skips the delivery modes' comparison,
``bench/modes.py``), ``BENCH_BACKLOG`` (200000; 0 skips it) the size of the backlog drained to
measure peak RSS, ``BENCH_FRAMEWORK_UPLOADS`` (100000) the uploads of each framework run (long
enough to time: it does about 10,000/s), ``BENCH_FRAMEWORK_ROUNDS`` (3) how many times each
framing's framework run repeats, interleaved (the best of each is reported: the runs share two
cores with the broker, so one alone is noisy), ``BENCH_LATENCY`` (1; 0 skips the real-time runs,
``bench/latency.py``: open-loop loads at 25-90 % of (a)'s throughput, recovery from an outage, the
chart), ``BENCH_WORKERS`` (1; 0 skips one worker against ``--workers 2``, ``bench/workers.py``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import codecs, http_clients
from consumer.config import load_settings
from consumer.core.records import MediaType, UploadEvent
from consumer.kafka import ensure_topics
from consumer.schema_registry import codec_for
from consumer.serde import AvroCodec, Codec, decode_blocking
from consumer.settings_sections import KafkaSettings
from moderation_devtools.broker import LocalKafka, ensure_jars
from moderation_devtools.otlp import OtlpReceiver
from moderation_devtools.registry import LocalRegistry
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import ConsumerProcess, SimulatorProcess, consumer_env, produce_uploads, upload
from moderation_simulator.state import LatencyModel

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 12
MEDIAN_MS, P99_MS = 50.0, 200.0
IN_FLIGHT = 1000
TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Verdicts:
    """Counts verdicts on a topic in a background thread, keeping (processed_at - created_at)."""

    def __init__(
        self, bootstrap: str, topic: str, created: dict[str, int], codec: Codec | None = None
    ) -> None:
        import threading

        from confluent_kafka import Consumer

        self.created = created
        self.topic = topic
        self.codec = codec or AvroCodec()
        self.seen: dict[str, int] = {}
        self.failed_closed = 0
        self.latencies: list[int] = []
        self.processed: list[int] = []
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{topic}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.2):
                if msg.error():
                    continue
                v = decode_blocking(self.codec, msg.value(), "ModerationVerdict", self.topic)
                uid = v["upload_id"]
                processed = int(v["processed_at"].timestamp() * 1000)
                if uid not in self.seen:
                    self.latencies.append(processed - self.created.get(uid, processed))
                    self.processed.append(processed)
                    if any(r["label"].startswith("check_unavailable") for r in v["reasons"]):
                        self.failed_closed += 1
                self.seen[uid] = self.seen.get(uid, 0) + 1
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


IMAGE_CHECKS = '["csam","visual","similarity"]'


def output_topics(out: str) -> dict[str, str]:
    """A scenario's own output topics, named after its verdict topic ``out``."""
    return {
        "verdict_topic": out,
        "review_topic": out + ".review",
        "escalation_topic": out + ".esc",
        "dlq_topic": out + ".dlq",
        "deleted_topic": out + ".del",
        "review_decision_topic": out + ".dec",
        "callback_topic": out + ".cb",
    }


def engine_env(
    bootstrap: str, sim_url: str, group: str, topic: str, out: str, checks: str = IMAGE_CHECKS, **extra: str
) -> dict[str, str]:
    """The engine's settings in every scenario: ``IN_FLIGHT`` uploads in flight, no content cache,
    ``checks``, the adaptive limit from 256 up to 1024, ``PARTITIONS`` partitions; ``extra`` wins."""
    return consumer_env(
        bootstrap,
        sim_url,
        group=group,
        topics={"input_topic": topic, **output_topics(out)},
        MODERATION_PROCESSING__MAX_IN_FLIGHT=str(IN_FLIGHT),
        MODERATION_PROCESSING__RESULT_CACHE_SIZE="0",
        MODERATION_PROCESSING__PARTITION_BUFFER="2000",
        MODERATION_PROCESSING__CHECKS=checks,
        MODERATION_LIMITS__INITIAL_CONCURRENCY="256",
        MODERATION_LIMITS__MAX_CONCURRENCY="1024",
        MODERATION_LOG_LEVEL="WARNING",
        MODERATION_KAFKA__TOPIC_PARTITIONS=str(PARTITIONS),
        **extra,
    )


def run_engine(
    bootstrap: str,
    sim: SimulatorProcess,
    topic: str,
    out: str,
    n: int,
    created: dict[str, int],
    workdir: Path,
    checks: str,
    label: str,
    outage_s: float = 0.0,
    others: dict[str, int] | None = None,
    registry_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Drain ``n`` uploads with one consumer process; CPU per upload of the consumer and of
    ``others`` (simulator, broker: they share this machine), RSS over time."""
    env = engine_env(bootstrap, sim.url, f"bench-{label}", topic, out, checks)
    env.update(extra_env or {})
    codec: Codec | None = None
    if registry_url is not None:  # the Confluent wire format, read and written
        env["MODERATION_SCHEMA_REGISTRY__URL"] = registry_url
        env["MODERATION_SCHEMA_REGISTRY__AUTO_REGISTER"] = "true"
        codec = codec_for(load_settings(schema_registry={"url": registry_url}))
    reader = Verdicts(bootstrap, out, created, codec)
    proc = ConsumerProcess(env, log_path=workdir / f"{label}.log").start()
    assert proc.process is not None
    pid = proc.process.pid
    cpu0: float | None = None
    seen0 = 0
    peak_rss = 0.0
    rss_samples: list[float] = []
    outage: dict[str, Any] = {}
    progress: list[tuple[int, float]] = []
    others0: dict[str, float] = {}
    deadline = time.monotonic() + max(600.0, n / 20)
    try:
        while len(reader.seen) < n and time.monotonic() < deadline and proc.alive:
            if cpu0 is None and reader.seen:
                cpu0, seen0 = proc_cpu_s(pid), len(reader.seen)
                others0 = {name: proc_cpu_s(p) for name, p in (others or {}).items()}
            if outage_s and not outage and len(reader.seen) >= n // 10:
                outage = {
                    "start": time.monotonic(),
                    "seen": len(reader.seen),
                    "before_rate": _rate(reader, 2.0),
                }
                sim.set_faults({"503": 1.0})
            if outage and "end" not in outage and time.monotonic() - outage["start"] >= outage_s:
                sim.set_faults({"503": 0.0})
                outage["end"] = time.monotonic()
                outage["seen_at_end"] = len(reader.seen)
            if outage and "end" in outage and "recovered" not in outage:
                rate_window = _rate(reader, 2.0)
                if rate_window >= 0.9 * outage.get("before_rate", 1e9):
                    outage["recovered"] = time.monotonic() - outage["end"]
            rss_samples.append(proc_rss_mb(pid))
            progress.append((len(reader.seen), rss_samples[-1]))
            peak_rss = max(peak_rss, proc_peak_rss_mb(pid))
            time.sleep(0.25)
        cpu1 = proc_cpu_s(pid)
        others1 = {name: proc_cpu_s(p) for name, p in (others or {}).items()}
    finally:
        proc.terminate(timeout=120)
        reader.stop()
        if codec is not None:
            codec.close()
    count = len(reader.seen) - seen0
    span_s = (max(reader.processed) - min(reader.processed)) / 1000 if len(reader.processed) > 1 else 0.0
    result: dict[str, Any] = {
        "uploads": len(reader.seen),
        "uploads_per_s": round(len(reader.seen) / span_s, 1) if span_s else 0.0,
        "cpu_ms_per_upload": round((cpu1 - (cpu0 or 0)) * 1000 / max(1, count), 3),
        "p50_ms": pct(reader.latencies, 0.5) if created else None,
        "p99_ms": pct(reader.latencies, 0.99) if created else None,
        "peak_rss_mb": round(peak_rss, 1),
        "duplicates": sum(c - 1 for c in reader.seen.values()),
        "failed_closed": reader.failed_closed,
    }
    for name, start in others0.items():
        result[f"{name}_cpu_ms_per_upload"] = round((others1[name] - start) * 1000 / max(1, count), 3)
    if progress:
        # RSS once warm (a tenth of the way in) and at the end: flat means bounded
        warm = next((rss for seen, rss in progress if seen >= n // 10), progress[-1][1])
        result["rss_warm_mb"] = round(warm, 1)
        result["rss_end_mb"] = round(progress[-1][1], 1)
    if outage_s:
        result["dead_letters"] = count_records(bootstrap, out + ".dlq")
        result.update(
            {
                "outage_s": outage_s,
                "recovery_s": round(outage.get("recovered", -1), 1),
                "rss_during_outage_mb": round(max(rss_samples, default=0), 1),
            }
        )
    return result


def count_records(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` (0 when it does not exist): the dead letters of a scenario."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count", "logger": _quiet()})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _quiet() -> Any:
    import logging

    quiet = logging.getLogger("bench.kafka")
    quiet.setLevel(logging.CRITICAL)
    return quiet


def _rate(reader: Verdicts, window_s: float) -> float:
    now_ms = time.time() * 1000
    recent = [p for p in reader.processed[-5000:] if p >= now_ms - window_s * 1000]
    return len(recent) / window_s


def littles_bound(in_flight: int) -> dict[str, Any]:
    """In-flight limit ÷ mean latency of the check chain (CSAM, then classification ∥ similarity)."""
    model = LatencyModel(MEDIAN_MS, P99_MS, rng=random.Random(1))
    chains = [model.sample_s() + max(model.sample_s(), model.sample_s()) for _ in range(100_000)]
    mean = statistics.fmean(chains)
    return {
        "uploads_per_s": round(in_flight / mean, 1),
        "chain_mean_ms": round(mean * 1000, 1),
        "in_flight": in_flight,
    }


def broker_limit(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    libs = ensure_jars()
    cmd = [
        "java",
        "-Xmx512m",
        "-cp",
        f"{libs}/*",
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(n),
        "--group",
        "bench-perf",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in out.stdout.splitlines() if line and line[0].isdigit()]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-300:]}
    fields = [f.strip() for f in lines[-1].split(",")]
    return {"uploads_per_s": float(fields[5]), "mb_per_s": float(fields[3])}


def baseline(
    bootstrap: str,
    sim: SimulatorProcess,
    topic: str,
    out: str,
    n: int,
    created: dict[str, int],
    workdir: Path,
    others: dict[str, int] | None = None,
) -> dict[str, Any]:
    """(b) the baseline (``bench/baseline.py``: confluent-kafka, aiohttp, a semaphore of
    ``IN_FLIGHT`` uploads) as its own process draining ``n`` uploads of ``topic`` in its own group,
    measured as ``run_engine`` measures the engine: uploads/s over its verdicts' span, its CPU (and
    ``others``') per upload from the first verdict on, peak RSS."""
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    ensure_topics(settings, [out, out + ".review", out + ".esc"], partitions=PARTITIONS)
    reader = Verdicts(bootstrap, out, created)
    cmd = [
        sys.executable,
        "-m",
        "bench.baseline",
        bootstrap,
        topic,
        out,
        sim.url,
        "--in-flight",
        str(IN_FLIGHT),
    ]
    with (workdir / "baseline.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    cpu0: float | None = None
    seen0, peak_rss = 0, 0.0
    others0: dict[str, float] = {}
    deadline = time.monotonic() + max(600.0, n / 20)
    try:
        while len(reader.seen) < n and time.monotonic() < deadline and proc.poll() is None:
            if cpu0 is None and reader.seen:
                cpu0, seen0 = proc_cpu_s(proc.pid), len(reader.seen)
                others0 = {name: proc_cpu_s(p) for name, p in (others or {}).items()}
            peak_rss = max(peak_rss, proc_peak_rss_mb(proc.pid))
            time.sleep(0.25)
        if proc.poll() is not None:
            return {"error": f"exited with {proc.returncode}: see {workdir / 'baseline.log'}"}
        cpu1 = proc_cpu_s(proc.pid)
        others1 = {name: proc_cpu_s(p) for name, p in (others or {}).items()}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.stop()
    count = len(reader.seen) - seen0
    span_s = (max(reader.processed) - min(reader.processed)) / 1000 if len(reader.processed) > 1 else 0.0
    result: dict[str, Any] = {
        "uploads": len(reader.seen),
        "uploads_per_s": round(len(reader.seen) / span_s, 1) if span_s else 0.0,
        "cpu_ms_per_upload": round((cpu1 - (cpu0 or 0)) * 1000 / max(1, count), 3),
        "p50_ms": pct(reader.latencies, 0.5),
        "p99_ms": pct(reader.latencies, 0.99),
        "peak_rss_mb": round(peak_rss, 1),
        "duplicates": sum(c - 1 for c in reader.seen.values()),
        "failed_closed": reader.failed_closed,
        "in_flight": IN_FLIGHT,
    }
    for name, start in others0.items():
        result[f"{name}_cpu_ms_per_upload"] = round((others1[name] - start) * 1000 / max(1, count), 3)
    return result


TRACING = {
    "off": {},
    "sampled_10pct": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "sampled_100pct": {"OTEL_TRACES_SAMPLER": "always_on"},
}


def tracing_runs(
    bootstrap: str, sim: SimulatorProcess, n: int, created: dict[str, int], workdir: Path
) -> dict[str, Any]:
    """The engine with tracing off, at 10 % and at 100 % sampling, spans exported over OTLP/HTTP to
    a receiver in this process (its decoding is not the consumer's CPU); ``BENCH_TRACING_ROUNDS``
    (3) interleaved rounds, the best of each."""
    rounds = int(os.environ.get("BENCH_TRACING_ROUNDS", "3"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in TRACING}
    with OtlpReceiver() as receiver:
        for i in range(rounds):
            for name, sampler in TRACING.items():
                print(f"tracing {name}, round {i + 1} of {rounds}...", flush=True)
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **sampler} if name != "off" else {}
                label, topic = f"tracing-{name}-{i}", "bench-uploads-tracing"
                checks, out = '["csam","visual","similarity"]', f"bench-verdicts-tracing-{name}-{i}"
                runs[name].append(
                    run_engine(bootstrap, sim, topic, out, n, created, workdir, checks, label, extra_env=env)
                )
        spans = len(receiver.spans())
    results: dict[str, Any] = {
        name: min(found, key=lambda r: r["cpu_ms_per_upload"] or 1e9) for name, found in runs.items()
    }
    for name, found in runs.items():
        results[name]["rounds_cpu_ms_per_upload"] = [r["cpu_ms_per_upload"] for r in found]
    off = results["off"]["cpu_ms_per_upload"]
    if off:
        for name in ("sampled_10pct", "sampled_100pct"):
            results[name]["cpu_vs_off"] = round(results[name]["cpu_ms_per_upload"] / off, 3)
    results["spans_received"] = spans
    return results


def framework_uploads(pool: list[UploadEvent], n: int) -> Iterator[UploadEvent]:
    """``n`` uploads with distinct ids, their media drawn from ``pool`` (no more memory than it)."""
    for i in range(n):
        yield replace(pool[i % len(pool)], upload_id=f"f-{i}")


def framework_runs(
    bootstrap: str, sim: SimulatorProcess, n: int, workdir: Path, registry_url: str
) -> dict[str, Any]:
    """(d) the framework alone (checks off) in both framings, interleaved rounds, best of each."""
    rounds = int(os.environ.get("BENCH_FRAMEWORK_ROUNDS", "3"))
    runs: dict[str, list[dict[str, Any]]] = {"framework": [], "framework_confluent": []}
    for i in range(rounds):
        for name, topic, url in (
            ("framework", "bench-framework", None),
            ("framework_confluent", "bench-framework-confluent", registry_url),
        ):
            print(f"(d) {name} (checks off), round {i + 1} of {rounds}...", flush=True)
            label = f"{name}-{i}"
            out = f"bench-verdicts-{label}"
            runs[name].append(
                run_engine(bootstrap, sim, topic, out, n, {}, workdir, "[]", label, registry_url=url)
            )
    best = {name: min(found, key=lambda r: r["cpu_ms_per_upload"] or 1e9) for name, found in runs.items()}
    for name, found in runs.items():
        best[name]["rounds_cpu_ms_per_upload"] = [r["cpu_ms_per_upload"] for r in found]
    single, confluent = (
        best["framework"]["cpu_ms_per_upload"],
        best["framework_confluent"]["cpu_ms_per_upload"],
    )
    if single:
        best["framework_confluent"]["cpu_vs_single_object"] = round(confluent / single, 3)
    return best


def image_uploads(prefix: str, n: int) -> Iterator[UploadEvent]:
    """``n`` distinct 64x64 PNG uploads (inline bytes), ids ``{prefix}-{i}``."""
    for i in range(n):
        yield upload(
            MediaType.IMAGE,
            upload_id=f"{prefix}-{i}",
            data=image_bytes(make_image(i, (64, 64))),
            content_type="image/png",
        )


def main() -> int:
    n = int(os.environ.get("BENCH_UPLOADS", "20000"))
    outage_s = float(os.environ.get("BENCH_OUTAGE_S", "30"))
    backlog = int(os.environ.get("BENCH_BACKLOG", "200000"))
    results: dict[str, Any] = {}
    print("HTTP client CPU per provider call...", flush=True)
    results["http_clients"] = http_clients.measure()
    workdir = Path(tempfile.mkdtemp(prefix="moderation-bench-"))
    kafka = LocalKafka(workdir / "kafka", heap="1g")
    registry = LocalRegistry(workdir / "registry")
    sim = SimulatorProcess(latency_median_ms=MEDIAN_MS, latency_p99_ms=P99_MS, log_path=workdir / "sim.log")
    try:
        bootstrap = kafka.start()
        registry_url = registry.start()
        sim.start()
        print("codec CPU per record, both framings...", flush=True)
        results["codecs"] = codecs.measure(registry_url)
        settings = KafkaSettings(bootstrap_servers=bootstrap)
        topics = ["bench-uploads", "bench-uploads-outage", "bench-uploads-tracing", "bench-framework"]
        topics.append("bench-framework-confluent")
        ensure_topics(settings, topics, partitions=PARTITIONS)
        print(f"producing {n} image uploads over {PARTITIONS} partitions...", flush=True)
        uploads = list(image_uploads("b", n))
        created = {u.upload_id: u.created_at for u in uploads}
        produce_uploads(bootstrap, "bench-uploads", uploads)
        produce_uploads(bootstrap, "bench-uploads-outage", uploads)
        produce_uploads(bootstrap, "bench-uploads-tracing", uploads)
        framework_n = int(os.environ.get("BENCH_FRAMEWORK_UPLOADS", "100000"))
        print(f"producing {framework_n} uploads in each framing for the framework runs...", flush=True)
        produce_uploads(bootstrap, "bench-framework", framework_uploads(uploads, framework_n))
        confluent = codec_for(load_settings(schema_registry={"url": registry_url, "auto_register": True}))
        produce_uploads(
            bootstrap, "bench-framework-confluent", framework_uploads(uploads, framework_n), codec=confluent
        )
        confluent.close()
        print("(e) broker limit (ConsumerPerformance)...", flush=True)
        results["broker_limit"] = broker_limit(bootstrap, "bench-uploads", n)
        assert sim.process is not None and kafka.process is not None
        others = {"simulator": sim.process.pid, "broker": kafka.process.pid}
        print("(a) engine...", flush=True)
        results["engine"] = run_engine(
            bootstrap,
            sim,
            "bench-uploads",
            "bench-verdicts-engine",
            n,
            created,
            workdir,
            '["csam","visual","similarity"]',
            "engine",
            others=others,
        )
        print("(b) baseline (confluent-kafka + aiohttp + semaphore) on the same backlog...", flush=True)
        results["baseline"] = baseline(
            bootstrap, sim, "bench-uploads", "bench-verdicts-baseline", n, created, workdir, others
        )
        if os.environ.get("BENCH_LATENCY", "1") != "0":
            from bench.latency import latency_runs

            # real time: open-loop loads at shares of the capacity (a) just measured
            results["latency"] = latency_runs(bootstrap, sim, workdir, results["engine"]["uploads_per_s"])
        if os.environ.get("BENCH_WORKERS", "1") != "0":
            from bench.workers import compare_workers

            results["workers"] = compare_workers(bootstrap, sim, workdir, "bench-uploads", n, created, others)
        if os.environ.get("BENCH_MODES", "1") != "0":
            from bench.modes import compare_modes

            results["modes"] = compare_modes(bootstrap, sim, workdir, "bench-uploads", n, created)
        results.update(framework_runs(bootstrap, sim, framework_n, workdir, registry_url))
        if os.environ.get("BENCH_TRACING", "1") != "0":
            results["tracing"] = tracing_runs(bootstrap, sim, n, created, workdir)
        results["littles_bound"] = littles_bound(IN_FLIGHT)
        if outage_s:
            print(f"outage: {outage_s:g}s of 503s...", flush=True)
            results["outage"] = run_engine(
                bootstrap,
                sim,
                "bench-uploads-outage",
                "bench-verdicts-outage",
                n,
                created,
                workdir,
                '["csam","visual","similarity"]',
                "outage",
                outage_s,
            )
        if backlog:
            print(f"backlog: producing and draining {backlog} uploads (peak RSS)...", flush=True)
            ensure_topics(settings, ["bench-backlog"], partitions=PARTITIONS)
            produce_uploads(bootstrap, "bench-backlog", image_uploads("k", backlog))
            results["backlog"] = run_engine(
                bootstrap,
                sim,
                "bench-backlog",
                "bench-verdicts-backlog",
                backlog,
                {},
                workdir,
                '["csam","visual","similarity"]',
                "backlog",
            )
    finally:
        sim.stop()
        registry.stop()
        kafka.stop()
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uploads": n,
    }
    engine, base = results.get("engine", {}), results.get("baseline", {})
    if engine.get("uploads_per_s") and base.get("uploads_per_s") and engine.get("cpu_ms_per_upload"):
        results["engine_vs_baseline"] = {  # above 1: the engine drains faster, spends less CPU
            "throughput": round(engine["uploads_per_s"] / base["uploads_per_s"], 2),
            "cpu_per_upload": round(base["cpu_ms_per_upload"] / engine["cpu_ms_per_upload"], 2),
        }
    if engine.get("cpu_ms_per_upload"):
        # what this machine can do when the consumer, the simulator and the broker share its cores
        consumer_ceiling = 1000 / engine["cpu_ms_per_upload"]
        machine_ms = sum(engine.get(f"{k}cpu_ms_per_upload", 0) for k in ("", "simulator_", "broker_"))
        machine_ceiling = (os.cpu_count() or 1) * 1000 / machine_ms
        bound = min(results["littles_bound"]["uploads_per_s"], consumer_ceiling, machine_ceiling)
        engine["consumer_cpu_ceiling"] = round(consumer_ceiling, 1)
        engine["machine_cpu_ceiling"] = round(machine_ceiling, 1)
        engine["of_bound"] = round(engine["uploads_per_s"] / bound, 3)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "latest.json").write_text(json.dumps(results, indent=2))
    if "latency" in results:
        from bench.latency import chart

        # beside latest.json, and the copy the benchmarks page shows
        drawn = chart(results["latency"], ROOT / "bench" / "results" / "latency.png")
        shutil.copyfile(drawn, ROOT / "docs" / "assets" / "latency.png")
    print(json.dumps(results, indent=2))
    print()
    labels = {"engine": "(a) engine", "baseline": "(b) baseline: confluent-kafka + aiohttp + semaphore"}
    width = max(map(len, labels.values()))
    print(
        f"{'scenario':{width}} {'uploads/s':>10} {'cpu ms/upload':>14} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'peak RSS MB':>12}"
    )
    scenarios = ("engine", "baseline", "littles_bound", "framework", "framework_confluent", "broker_limit")
    for name in (*scenarios, "outage", "backlog"):
        r = results.get(name, {})
        print(
            f"{labels.get(name, name):{width}} {r.get('uploads_per_s', '-'):>10}"
            f" {r.get('cpu_ms_per_upload', '-'):>14} "
            f"{r.get('p50_ms') or '-':>8} {r.get('p99_ms') or '-':>8} {r.get('peak_rss_mb', '-'):>12}"
        )
    if "engine_vs_baseline" in results:
        ratio = results["engine_vs_baseline"]
        print(
            f"engine vs baseline: uploads/s, engine's / baseline's {ratio['throughput']};"
            f" CPU per upload, baseline's / engine's {ratio['cpu_per_upload']}"
        )
    print()
    for client, ms in results["http_clients"].items():
        print(f"http client {client:<34} {ms:.3f} ms CPU per call")
    for framing, figures in results.get("codecs", {}).items():
        print(
            f"codec {framing:<14} encode a verdict {figures['encode_verdict_us']:>6} us,"
            f" decode an upload {figures['decode_upload_us']:>6} us (CPU)"
        )
    for name, figures in results.get("tracing", {}).items():
        if isinstance(figures, dict):
            rate, cpu = figures["uploads_per_s"], figures["cpu_ms_per_upload"]
            print(
                f"tracing {name:<15} {rate:>8} uploads/s {cpu:>7} ms CPU per upload"
                f" (vs off: {figures.get('cpu_vs_off', 1.0)})"
            )
    if "modes" in results:
        from bench.modes import table

        print(table(results["modes"]))
        print("exactly_once / at_least_once:", json.dumps(results["modes"]["exactly_once_vs_at_least_once"]))
    if "latency" in results:
        from bench.latency import recovery_line
        from bench.latency import table as latency_table

        print(latency_table(results["latency"]))
        print(recovery_line(results["latency"]))
        print("latency chart: bench/results/latency.png (and docs/assets/latency.png)")
    if "workers" in results:
        from bench.workers import sizing_table
        from bench.workers import table as workers_table

        print(workers_table(results["workers"]))
        print(sizing_table(results["workers"]))
    if "framework_confluent" in results:
        ratio = results["framework_confluent"].get("cpu_vs_single_object")
        print(f"framework CPU per upload, Confluent wire format / single-object encoding: {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
