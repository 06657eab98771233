"""Real time, measured: latency under a steady open-loop load, and recovery after a provider outage.

Uploads are offered open-loop by a separate producer process (``python -m bench.latency produce``):
Poisson arrivals at a fixed rate, never waiting for verdicts. The input and verdict topics stamp
records with the broker's clock (``message.timestamp.type=LogAppendTime``), so for every upload:

- *end-to-end*: the verdict's append time minus the upload's append time;
- *provider chain*: the time its checks took, from the verdict's own ``checks`` (each check's wall
  time on the client: CSAM, then visual ∥ similarity, so CSAM + the longer of the two);
- *added*: end-to-end minus the provider chain: what the service itself adds by fetching, queueing,
  scheduling, deciding, encoding and producing.

Each load (``BENCH_LATENCY_LOADS``, default 25, 50, 75 and 90 % of the capacity measured on the same
machine: the engine's drained-backlog throughput) runs for ``BENCH_LATENCY_S`` (60) seconds with a fresh
consumer; the first ``WARM_S`` seconds are left out. ``recovery`` runs at 50 % with a
``BENCH_RECOVERY_OUTAGE_S`` (60) second outage (the simulator answering 503), then measures how long
after recovery the added p99 is back under its target, and how fast the backlog drained. ``knobs``
measures the verdict producer's ``linger.ms`` at 0, 5 and 20 (the default is 1) at 50 %
(``BENCH_LATENCY_KNOBS``, 1; 0 skips).

``python -m bench.latency`` runs it alone (its own broker and simulator, capacity measured first);
``make bench`` runs it after the engine scenario and writes the chart beside ``latest.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.run import (
    MEDIAN_MS,
    P99_MS,
    PARTITIONS,
    ROOT,
    count_records,
    engine_env,
    image_uploads,
    output_topics,
    proc_cpu_s,
    run_engine,
)
from consumer.serde import AvroCodec, decode_blocking
from moderation_devtools.broker import LocalKafka, free_port
from moderation_devtools.stack import ConsumerProcess, SimulatorProcess, produce_uploads

__all__ = ["chart", "latency_runs", "recovery_line", "table"]

LOADS = (0.25, 0.5, 0.75, 0.9)
WARM_S = 5.0
TARGETS_MS = {0.5: 10.0, 0.9: 50.0}  # p99 added latency the issue asks for at these loads
IMAGE_POOL = 400


# -- the producer process --------------------------------------------------------------------------


def produce_open_loop(
    bootstrap: str, topic: str, rate: float, seconds: float, prefix: str, seed: int
) -> None:
    """Poisson arrivals at ``rate`` per second for ``seconds``: each upload is produced at its due
    time whatever happens downstream (open loop). Prints how many and how late the sends were."""
    rng = random.Random(seed)
    pool = list(image_uploads(f"{prefix}-pool", IMAGE_POOL))
    codec = AvroCodec()
    due: list[float] = []
    t = 0.0
    while (t := t + rng.expovariate(rate)) < seconds:
        due.append(t)
    records = [
        (
            f"{prefix}-{i}".encode(),
            codec.encode(
                "UploadEvent", replace(pool[i % IMAGE_POOL], upload_id=f"{prefix}-{i}").to_avro(), topic=topic
            ),
        )
        for i in range(len(due))
    ]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    late: list[float] = []
    print("ready", flush=True)
    start = time.monotonic()
    for at, (key, value) in zip(due, records, strict=True):
        while (wait := start + at - time.monotonic()) > 0:
            time.sleep(min(wait, 0.005))
        late.append(time.monotonic() - start - at)
        producer.produce(topic, value, key=key)
        producer.poll(0)
    producer.flush(60)
    late.sort()
    print(
        json.dumps(
            {"produced": len(due), "late_p99_ms": round(late[int(0.99 * len(late))] * 1000, 2) if late else 0}
        )
    )


# -- one measured run -----------------------------------------------------------------------------


def create_topics(bootstrap: str, topics: list[str]) -> None:
    """Topics stamped with the broker's clock, so both ends of a latency use one clock."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=PARTITIONS,
                replication_factor=1,
                config={"message.timestamp.type": "LogAppendTime"},
            )
            for t in topics
        ]
    )
    for future in futures.values():
        future.result(30)


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` (assigned from the start; no group)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-latency-read", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        records: list[Any] = []
        want = sum(ends.values())
        deadline = time.monotonic() + 120
        while len(records) < want and time.monotonic() < deadline:
            records += [m for m in consumer.consume(10_000, 1.0) if m.error() is None]
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` so far; 0 while a new topic's leaders are still being elected."""
    try:
        return int(count_records(bootstrap, topic))
    except KafkaException:
        return 0


def chain_ms(checks: list[dict[str, Any]]) -> float:
    """The provider chain of one upload: CSAM first, then the others side by side."""
    by: dict[str, float] = {c["check"]: float(c["latency_ms"]) for c in checks}
    first = by.pop("csam", 0.0)
    return first + max(by.values(), default=0.0)


@dataclass
class Sample:
    produced_ms: int  # the upload's append time (broker clock)
    e2e_ms: int
    chain_ms: float
    failed_closed: bool

    @property
    def added_ms(self) -> float:
        return self.e2e_ms - self.chain_ms


MAX_SCRAPE_BYTES = 1 << 20  # our consumer's whole /metrics is about 60 KB


def intake_gauges(body: bytes) -> dict[str, float]:
    """``moderation_intake_held`` and ``moderation_in_flight_records`` from a /metrics body (read
    at most ``MAX_SCRAPE_BYTES``); a line that does not parse is skipped, never raised."""
    wanted = ("moderation_intake_held", "moderation_in_flight_records")
    values: dict[str, float] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            try:
                values[name] = float(rest.split(" ")[0])
            except ValueError:
                continue
    return values


@dataclass
class Watch:
    """Scrapes the consumer's /metrics once a second: whether intake was held and how much was in flight."""

    url: str
    held: list[tuple[float, float, float]] = field(default_factory=list)  # (time, intake_held, in_flight)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watch:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    values = intake_gauges(answer.read(MAX_SCRAPE_BYTES))
            except OSError:
                continue
            self.held.append(
                (
                    time.time(),
                    values.get("moderation_intake_held", 0.0),
                    values.get("moderation_in_flight_records", 0.0),
                )
            )

    def stop(self) -> None:
        self._stop.set()


def measured_run(
    bootstrap: str,
    sim: SimulatorProcess,
    workdir: Path,
    label: str,
    rate: float,
    seconds: float,
    *,
    extra_env: dict[str, str] | None = None,
    outage: tuple[float, float] | None = None,
) -> tuple[list[Sample], dict[str, Any]]:
    """One consumer under ``rate`` uploads/s for ``seconds`` (plus ``WARM_S``, left out). ``outage``:
    (start, length) in seconds from the start of the load: the simulator answers 503 meanwhile."""
    topic, out = f"bench-latency-{label}", f"bench-latency-verdicts-{label}"
    topics = output_topics(out)
    create_topics(bootstrap, [topic, *topics.values()])
    health_port = free_port()
    env = engine_env(
        bootstrap, sim.url, f"bench-latency-{label}", topic, out, MODERATION_HEALTH__PORT=str(health_port)
    )
    env.update(extra_env or {})
    proc = ConsumerProcess(env, log_path=workdir / f"latency-{label}.log").start()
    assert proc.process is not None
    watch = Watch(f"http://127.0.0.1:{health_port}/metrics")
    total_s = WARM_S + seconds
    try:
        # the consumer is assigned and warm once a first upload has its verdict
        warm = next(image_uploads(f"{label}-warm", 1))
        produce_uploads(bootstrap, topic, [warm])
        deadline = time.monotonic() + 120
        while end_offsets(bootstrap, out) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        producer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.latency",
                "produce",
                bootstrap,
                topic,
                str(rate),
                str(total_s),
                label,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert producer.stdout is not None
        producer.stdout.readline()  # "ready": its records are encoded, the clock starts now
        started = time.time()
        cpu0 = proc_cpu_s(proc.process.pid)
        if outage is not None:  # a scrape renders every metric on the event loop: only when needed
            watch.start()
        outage_window: tuple[float, float] | None = None
        if outage is not None:
            time.sleep(WARM_S + outage[0])
            sim.set_faults({"503": 1.0})
            began = time.time()
            time.sleep(outage[1])
            sim.set_faults({"503": 0.0})
            outage_window = (began, time.time())
        report = json.loads(producer.communicate(timeout=total_s + 600)[0].splitlines()[-1])
        want = report["produced"] + 1
        deadline = time.monotonic() + 300
        while end_offsets(bootstrap, out) < want and time.monotonic() < deadline and proc.alive:
            time.sleep(0.2)
        cpu1 = proc_cpu_s(proc.process.pid)
    finally:
        watch.stop()
        proc.terminate(timeout=120)
    appended = {(m.partition(), m.offset()): m.timestamp()[1] for m in read_all(bootstrap, topic)}
    codec = AvroCodec()
    samples: list[Sample] = []
    seen: set[str] = set()
    first_ms = started * 1000 + WARM_S * 1000
    for m in read_all(bootstrap, out):
        v = decode_blocking(codec, m.value(), "ModerationVerdict", out)
        if v["upload_id"] in seen or v["upload_id"] == warm.upload_id:
            continue
        seen.add(v["upload_id"])
        produced = appended.get((v["source_partition"], v["source_offset"]))
        if produced is None or produced < first_ms:
            continue
        samples.append(
            Sample(
                produced,
                m.timestamp()[1] - produced,
                chain_ms(v["checks"]),
                any(r["label"].startswith("check_unavailable") for r in v["reasons"]),
            )
        )
    info: dict[str, Any] = {
        "offered_per_s": round(rate, 1),
        "produced": report["produced"],
        "producer_late_p99_ms": report["late_p99_ms"],
        "verdicts": len(seen),
        "missing": report["produced"] - len(seen),
        "cpu_ms_per_upload": round((cpu1 - cpu0) * 1000 / max(1, len(seen)), 3),
        "dead_letters": count_records(bootstrap, topics["dlq_topic"]),
        "failed_closed": sum(s.failed_closed for s in samples),
    }
    if outage_window is not None:
        began, ended = outage_window
        during = [(h, f) for t, h, f in watch.held if began <= t <= ended]
        info["outage"] = {"began": began, "ended": ended}
        info["intake_held_share"] = round(sum(h for h, _ in during) / max(1, len(during)), 3)
        info["in_flight_max_during_outage"] = max((f for _, f in during), default=0)
    return samples, info


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1)}


def summarize(samples: list[Sample], info: dict[str, Any]) -> dict[str, Any]:
    return {
        **info,
        "measured": len(samples),
        "end_to_end_ms": percentiles([float(s.e2e_ms) for s in samples]),
        "provider_chain_ms": percentiles([s.chain_ms for s in samples]),
        "added_ms": percentiles([s.added_ms for s in samples]),
    }


def recovery(
    samples: list[Sample], ended_s: float, target_ms: float, window_s: float = 5.0
) -> dict[str, Any]:
    """From the end of the outage: when the added p99 of uploads produced in ``window_s`` windows
    is back under ``target_ms`` (two windows in a row), and how fast verdicts came while the
    backlog drained."""
    after = sorted((s for s in samples if s.produced_ms >= ended_s * 1000), key=lambda s: s.produced_ms)
    windows: list[tuple[float, float]] = []  # (start from recovery, p99 added)
    if after:
        start = ended_s * 1000
        while start <= after[-1].produced_ms:
            inside = [s.added_ms for s in after if start <= s.produced_ms < start + window_s * 1000]
            if inside:
                windows.append(((start - ended_s * 1000) / 1000, percentiles(inside)["p99"]))
            start += window_s * 1000
    # back: the first window under the target whose successor is under it too (one quiet window
    # alone can fall between two bursts of the drain; "every later window" would let one noisy
    # window on this shared machine hide the recovery)
    back = next(
        (
            w
            for (w, p99), (_, after_p99) in itertools.pairwise(windows)
            if p99 <= target_ms and after_p99 <= target_ms
        ),
        None,
    )
    # verdicts of everything held by the outage: how long they took to come after recovery
    held = [s for s in samples if s.produced_ms < ended_s * 1000]
    done_ms = [s.produced_ms + s.e2e_ms for s in held]
    drained = (max(done_ms) - ended_s * 1000) / 1000 if done_ms else 0.0
    finished = [s.produced_ms + s.e2e_ms for s in samples]
    in_drain = sum(ended_s * 1000 <= t <= ended_s * 1000 + drained * 1000 for t in finished)
    return {
        "target_ms": target_ms,
        "window_s": window_s,
        "back_under_target_s": back,
        "windows_p99_added_ms": windows,
        "backlog_drained_s": round(drained, 1),
        "drain_verdicts_per_s": round(in_drain / drained, 1) if drained else 0.0,
    }


def latency_runs(bootstrap: str, sim: SimulatorProcess, workdir: Path, capacity: float) -> dict[str, Any]:
    """Every load, the recovery, the knobs: a summary for ``latest.json``."""
    seconds = float(os.environ.get("BENCH_LATENCY_S", "60"))
    loads = [
        float(x) for x in os.environ.get("BENCH_LATENCY_LOADS", ",".join(map(str, LOADS))).split(",") if x
    ]
    results: dict[str, Any] = {"capacity_per_s": capacity, "seconds": seconds, "warm_s": WARM_S, "loads": {}}
    for load in loads:
        print(
            f"latency: {load:.0%} of capacity ({capacity * load:.0f} uploads/s) for {seconds:g} s...",
            flush=True,
        )
        samples, info = measured_run(
            bootstrap, sim, workdir, f"load{int(load * 100)}", capacity * load, seconds
        )
        results["loads"][f"{int(load * 100)}%"] = {"load": load, **summarize(samples, info)}
    if os.environ.get("BENCH_LATENCY_KNOBS", "1") != "0":
        results["knobs"] = {}
        for name, value in (("linger_ms_0", "0"), ("linger_ms_5", "5"), ("linger_ms_20", "20")):
            print(f"latency knobs: {name} at 50 %...", flush=True)
            env = {"MODERATION_KAFKA__CLIENT_CONFIG": json.dumps({"linger.ms": value})}
            samples, info = measured_run(
                bootstrap, sim, workdir, f"knob-{name}", capacity * 0.5, min(seconds, 30), extra_env=env
            )
            results["knobs"][name] = summarize(samples, info)
    outage_s = float(os.environ.get("BENCH_RECOVERY_OUTAGE_S", "60"))
    if outage_s > 0:
        before, after = 15.0, max(60.0, outage_s * 1.5)
        print(f"latency: recovery from a {outage_s:g} s outage at 50 %...", flush=True)
        samples, info = measured_run(
            bootstrap,
            sim,
            workdir,
            "recovery",
            capacity * 0.5,
            before + outage_s + after,
            outage=(before, outage_s),
        )
        # "back to normal": under the target, or under the steady p99 at this load when that is higher
        steady50 = results["loads"].get("50%", {}).get("added_ms", {}).get("p99", 0.0)
        target = max(TARGETS_MS[0.5], steady50)
        window = info.pop("outage")
        results["recovery"] = {
            **info,
            "outage_s": outage_s,
            "capacity_per_s": capacity,
            **recovery(samples, window["ended"], target),
        }
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| load | offered/s | end-to-end p50 / p95 / p99 / max ms | chain p50 / p99 ms"
        " | added p50 / p95 / p99 / max ms | CPU ms/upload |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["loads"].items():
        e, c, a = r["end_to_end_ms"], r["provider_chain_ms"], r["added_ms"]
        lines.append(
            f"| {name} | {r['offered_per_s']} | {e['p50']:g} / {e['p95']:g} / {e['p99']:g} / {e['max']:g}"
            f" | {c['p50']:g} / {c['p99']:g} | {a['p50']:g} / {a['p95']:g} / {a['p99']:g} / {a['max']:g}"
            f" | {r['cpu_ms_per_upload']} |"
        )
    return "\n".join(lines)


def recovery_line(results: dict[str, Any]) -> str:
    """The recovery run in one line."""
    r = results.get("recovery")
    if not r:
        return "recovery: not run"
    back = r["back_under_target_s"]
    when = f"{back:g} s after recovery" if back is not None else "not within the run"
    return (
        f"recovery from a {r['outage_s']:g} s outage at 50 %: dead letters {r['dead_letters']},"
        f" failed closed {r['failed_closed']}, missing {r['missing']}, intake held"
        f" {r['intake_held_share']:.0%} of the outage (at most {r['in_flight_max_during_outage']:.0f} in"
        f" flight); backlog drained {r['backlog_drained_s']} s after recovery at"
        f" {r['drain_verdicts_per_s']} verdicts/s (capacity {r['capacity_per_s']}); added p99 back under"
        f" {r['target_ms']} ms {when}"
    )


def chart(results: dict[str, Any], path: Path) -> Path:
    """Latency percentiles against offered load, end-to-end and added, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results["loads"].values(), key=lambda r: r["load"])
    x = [r["load"] * 100 for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, title in (
        (left, "end_to_end_ms", "end to end"),
        (right, "added_ms", "added by the consumer"),
    ):
        for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("max", "x--")):
            axis.plot(x, [r[key][q] for r in rows], style, label=q)
        axis.set_title(f"Verdict latency, {title}")
        axis.set_xlabel(f"offered load, % of capacity ({results['capacity_per_s']:.0f} uploads/s)")
        axis.set_ylabel("ms")
        axis.set_yscale("log")
        axis.set_xlim(0, 100)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    for load, target in TARGETS_MS.items():
        right.plot([load * 100], [target], "r*", markersize=12)
    right.annotate(
        "targets (p99)", (50, TARGETS_MS[0.5]), textcoords="offset points", xytext=(5, -12), color="r"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    if sys.argv[1:2] == ["produce"]:
        bootstrap, topic, rate, seconds, prefix = sys.argv[2:7]
        produce_open_loop(
            bootstrap, topic, float(rate), float(seconds), prefix, seed=zlib.crc32(prefix.encode())
        )
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="moderation-bench-latency-"))
    kafka = LocalKafka(workdir / "kafka", heap="1g")
    sim = SimulatorProcess(latency_median_ms=MEDIAN_MS, latency_p99_ms=P99_MS, log_path=workdir / "sim.log")
    try:
        bootstrap = kafka.start()
        sim.start()
        capacity = float(os.environ.get("BENCH_CAPACITY", "0"))
        if not capacity:
            n = int(os.environ.get("BENCH_UPLOADS", "8000"))
            create_topics(bootstrap, ["bench-uploads"])
            uploads = list(image_uploads("b", n))
            produce_uploads(bootstrap, "bench-uploads", uploads)
            print(f"capacity: draining {n} uploads...", flush=True)
            engine = run_engine(
                bootstrap,
                sim,
                "bench-uploads",
                "bench-verdicts-capacity",
                n,
                {u.upload_id: u.created_at for u in uploads},
                workdir,
                '["csam","visual","similarity"]',
                "capacity",
            )
            capacity = engine["uploads_per_s"]
        results = latency_runs(bootstrap, sim, workdir, capacity)
    finally:
        sim.stop()
        kafka.stop()
    print(json.dumps(results, indent=1, default=str)[:20000])
    print(table(results))
    print(recovery_line(results))
    out = ROOT / "bench" / "results"
    (out / "latency.json").write_text(json.dumps(results, indent=1, default=str))
    print("chart:", chart(results, out / "latency.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
