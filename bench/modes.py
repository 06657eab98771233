"""The two delivery modes side by side: ``at_least_once`` against ``exactly_once``.

Two measures, each run once per mode per round, the modes' order alternating between rounds (the
machine's drift falls on both): a drained backlog (throughput and the consumer's CPU per upload) and
a steady load (uploads produced at ``BENCH_STEADY_RATE`` per second for ``BENCH_STEADY_S`` seconds,
each stamped when it is produced; latency is from that stamp to the verdict being readable by a
``read_committed`` reader, which in ``exactly_once`` is when its transaction commits).

``python -m bench.modes`` runs it alone (its own broker and simulator); ``make bench`` runs it too.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.run import (
    IN_FLIGHT,
    MEDIAN_MS,
    P99_MS,
    PARTITIONS,
    image_uploads,
    output_topics,
    pct,
    proc_cpu_s,
    run_engine,
)
from consumer.kafka import ensure_topics
from consumer.serde import AvroCodec, decode_blocking
from consumer.settings_sections import KafkaSettings
from moderation_devtools.broker import LocalKafka
from moderation_devtools.stack import ConsumerProcess, SimulatorProcess, consumer_env, produce_uploads

__all__ = ["compare_modes", "steady"]

MODES = ("at_least_once", "exactly_once")


class VisibleVerdicts:
    """Reads verdicts as a downstream ``read_committed`` reader would, noting when each became
    readable: (receipt - the upload's creation) in ms, by upload id."""

    def __init__(self, bootstrap: str, topic: str, created: dict[str, int]) -> None:
        self.created = created
        self.latencies: dict[str, int] = {}
        self.duplicates = 0
        self._codec = AvroCodec()
        self._topic = topic
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-visible-{topic}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # the first record as soon as it is there, then what else is fetched: a batch consume
            # would hold each receipt until the batch fills or its timeout passes
            messages = self._consumer.consume(1, 0.05)
            if messages:
                messages += self._consumer.consume(999, 0)
            for msg in messages:
                if msg.error():
                    continue
                now = int(time.time() * 1000)
                uid = decode_blocking(self._codec, msg.value(), "ModerationVerdict", self._topic)["upload_id"]
                if uid in self.latencies:
                    self.duplicates += 1
                elif uid in self.created:
                    self.latencies[uid] = now - self.created[uid]
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def steady(
    bootstrap: str,
    sim: SimulatorProcess,
    workdir: Path,
    mode: str,
    label: str,
    rate: float,
    seconds: float,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One consumer process in ``mode`` under ``rate`` uploads/s for ``seconds``: latency to a
    readable verdict (p50, p99, max) and the consumer's CPU per upload."""
    topic, out = f"bench-steady-{label}", f"bench-steady-verdicts-{label}"
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), [topic], partitions=PARTITIONS)
    env = consumer_env(
        bootstrap,
        sim.url,
        group=f"bench-steady-{label}",
        topics={"input_topic": topic, **output_topics(out)},
        MODERATION_PROCESSING__DELIVERY=mode,
        MODERATION_PROCESSING__MAX_IN_FLIGHT=str(IN_FLIGHT),
        MODERATION_PROCESSING__RESULT_CACHE_SIZE="0",
        MODERATION_PROCESSING__CHECKS='["csam","visual","similarity"]',
        MODERATION_LIMITS__INITIAL_CONCURRENCY="256",
        MODERATION_LIMITS__MAX_CONCURRENCY="1024",
        MODERATION_LOG_LEVEL="WARNING",
        MODERATION_KAFKA__TOPIC_PARTITIONS=str(PARTITIONS),
    )
    env.update(extra_env or {})
    n = int(rate * seconds)
    uploads = list(image_uploads(f"s{label}", n + 1))
    created: dict[str, int] = {}
    reader = VisibleVerdicts(bootstrap, out, created)
    proc = ConsumerProcess(env, log_path=workdir / f"steady-{label}.log").start()
    assert proc.process is not None
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1})
    codec = AvroCodec()
    try:
        warm = uploads[0]  # the consumer is assigned and warm once the first verdict is readable
        created[warm.upload_id] = int(time.time() * 1000)
        produce_uploads(bootstrap, topic, [warm])
        deadline = time.monotonic() + 120
        while warm.upload_id not in reader.latencies and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu0 = proc_cpu_s(proc.process.pid)
        start = time.monotonic()
        for i, upload in enumerate(uploads[1:]):
            due = start + i / rate
            while (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.01))
            stamped = replace(upload, created_at=int(time.time() * 1000))
            created[stamped.upload_id] = stamped.created_at
            producer.produce(
                topic,
                codec.encode("UploadEvent", stamped.to_avro(), topic=topic),
                key=stamped.upload_id.encode(),
            )
            producer.poll(0)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while len(reader.latencies) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        cpu1 = proc_cpu_s(proc.process.pid)
    finally:
        proc.terminate(timeout=120)
        reader.stop()
    latencies = [ms for uid, ms in reader.latencies.items() if uid != uploads[0].upload_id]
    return {
        "mode": mode,
        "rate_per_s": rate,
        "uploads": n,
        "verdicts": len(latencies),
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "max_ms": max(latencies, default=0),
        "cpu_ms_per_upload": round((cpu1 - cpu0) * 1000 / max(1, len(latencies)), 3),
        "duplicates": reader.duplicates,
    }


def compare_modes(
    bootstrap: str, sim: SimulatorProcess, workdir: Path, backlog_topic: str, n: int, created: dict[str, int]
) -> dict[str, Any]:
    """Both modes on the pre-produced backlog ``backlog_topic`` (``n`` uploads) and under a steady
    load, ``BENCH_MODE_ROUNDS`` rounds; medians per mode and exactly_once's cost against
    at_least_once (ratios above 1 cost more)."""
    rounds = int(os.environ.get("BENCH_MODE_ROUNDS", "2"))
    rate = float(os.environ.get("BENCH_STEADY_RATE", "100"))
    seconds = float(os.environ.get("BENCH_STEADY_S", "30"))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"backlog": [], "steady": []} for m in MODES}
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else reversed(MODES):
            label = f"{mode}-{r}"
            print(f"modes: {mode}, round {r + 1}/{rounds}: backlog, then steady load...", flush=True)
            runs[mode]["backlog"].append(
                run_engine(
                    bootstrap,
                    sim,
                    backlog_topic,
                    f"bench-verdicts-modes-{label}",
                    n,
                    created,
                    workdir,
                    '["csam","visual","similarity"]',
                    f"modes-{label}",
                    extra_env={"MODERATION_PROCESSING__DELIVERY": mode},
                )
            )
            runs[mode]["steady"].append(steady(bootstrap, sim, workdir, mode, label, rate, seconds))
    summary: dict[str, Any] = {"rounds": rounds, "steady_rate_per_s": rate, "steady_s": seconds}
    for mode in MODES:
        backlog, load = runs[mode]["backlog"], runs[mode]["steady"]
        summary[mode] = {
            "uploads_per_s": statistics.median(b["uploads_per_s"] for b in backlog),
            "cpu_ms_per_upload": statistics.median(b["cpu_ms_per_upload"] for b in backlog),
            "steady_cpu_ms_per_upload": statistics.median(s["cpu_ms_per_upload"] for s in load),
            "steady_p50_ms": statistics.median(s["p50_ms"] for s in load),
            "steady_p99_ms": statistics.median(s["p99_ms"] for s in load),
            "duplicates": sum(b["duplicates"] for b in backlog) + sum(s["duplicates"] for s in load),
            "runs": runs[mode],
        }
    alo, eo = summary["at_least_once"], summary["exactly_once"]
    summary["exactly_once_vs_at_least_once"] = {
        "throughput": round(alo["uploads_per_s"] / eo["uploads_per_s"], 3) if eo["uploads_per_s"] else None,
        "cpu_per_upload": round(eo["cpu_ms_per_upload"] / alo["cpu_ms_per_upload"], 3),
        "steady_cpu_per_upload": round(eo["steady_cpu_ms_per_upload"] / alo["steady_cpu_ms_per_upload"], 3),
        "steady_p50": round(eo["steady_p50_ms"] / max(1.0, alo["steady_p50_ms"]), 3),
        "steady_p99": round(eo["steady_p99_ms"] / max(1.0, alo["steady_p99_ms"]), 3),
    }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| mode | backlog uploads/s | CPU ms/upload | steady CPU ms/upload | steady p50 ms | steady p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode in MODES:
        m = summary[mode]
        lines.append(
            f"| {mode} | {m['uploads_per_s']} | {m['cpu_ms_per_upload']} | {m['steady_cpu_ms_per_upload']}"
            f" | {m['steady_p50_ms']} | {m['steady_p99_ms']} |"
        )
    return "\n".join(lines)


def main() -> int:
    from bench.run import image_uploads as uploads_of

    n = int(os.environ.get("BENCH_UPLOADS", "10000"))
    workdir = Path(tempfile.mkdtemp(prefix="moderation-bench-modes-"))
    kafka = LocalKafka(workdir / "kafka", heap="1g")
    sim = SimulatorProcess(latency_median_ms=MEDIAN_MS, latency_p99_ms=P99_MS, log_path=workdir / "sim.log")
    try:
        bootstrap = kafka.start()
        sim.start()
        ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), ["bench-uploads"], partitions=PARTITIONS)
        uploads = list(uploads_of("b", n))
        produce_uploads(bootstrap, "bench-uploads", uploads)
        summary = compare_modes(
            bootstrap, sim, workdir, "bench-uploads", n, {u.upload_id: u.created_at for u in uploads}
        )
    finally:
        sim.stop()
        kafka.stop()
    print(json.dumps({k: v for k, v in summary.items()}, default=str, indent=1)[:20000])
    print(table(summary))
    print("exactly_once / at_least_once:", json.dumps(summary["exactly_once_vs_at_least_once"]))
    out = Path(__file__).parent / "results" / "modes.json"
    out.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
