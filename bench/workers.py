"""Scaling out: one consumer process against ``run --workers 2``, measured, and sizing on paper.

Measured: the engine drains a pre-produced backlog of image uploads once with one worker and once
with ``--workers 2`` (a supervisor and two workers in one consumer group, every worker configured
alike, ``bench.run``'s settings), ``BENCH_WORKERS_ROUNDS`` (2) rounds, the order alternating between
rounds (the machine's drift falls on both). Each run reports uploads/s, CPU per upload summed over
the supervisor and every process under it (found by walking ``/proc``: a parent pid per process),
the peak RSS of all of them together, and, to explain the ratio, what the simulator, the broker
and the whole machine spent meanwhile (they share its cores).

On paper: ``sizing`` derives cores, pods, the in-flight limit, provider connections and partitions
for a target rate from CPU per upload and the check chain's latency; ``sizing_table`` tabulates it
from the measured figures.

``python -m bench.workers`` runs it alone (its own broker and simulator; ``BENCH_UPLOADS``, 10000);
writes ``bench/results/workers.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.run import (
    MEDIAN_MS,
    P99_MS,
    PARTITIONS,
    Verdicts,
    engine_env,
    image_uploads,
    proc_cpu_s,
)
from consumer.kafka import ensure_topics
from consumer.settings_sections import KafkaSettings
from consumer.wiring import CONNECTIONS_PER_RECORD
from moderation_devtools.broker import LocalKafka
from moderation_devtools.stack import ConsumerProcess, SimulatorProcess, produce_uploads
from moderation_simulator.state import LatencyModel

__all__ = [
    "chain_latency",
    "compare_workers",
    "process_tree",
    "sizing",
    "sizing_table",
    "table",
]

WORKERS = (1, 2)
TARGETS = (100, 500, 1_000, 5_000, 10_000)


# -- measured -----------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and every live process under it (children, their children...), from each
    process's parent pid in ``/proc/<pid>/stat``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot, from ``/proc/stat``."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class _Tree:
    """CPU and peak RSS of a process and everything under it, sampled: a process that exits
    between samples keeps its last sample; one that appears after ``mark`` counts from zero (its
    start-up included: a restarted worker's cost is the deployment's cost)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.cpu: dict[int, float] = {}
        self.peak_rss: dict[int, float] = {}
        self.base: dict[int, float] | None = None

    def sample(self) -> None:
        for pid in process_tree(self.root):
            try:
                self.cpu[pid] = proc_cpu_s(pid)
                self.peak_rss[pid] = _peak_rss_mb(pid)
            except (OSError, IndexError, ValueError):  # exited while read
                continue

    def mark(self) -> None:
        self.sample()
        self.base = dict(self.cpu)

    def order(self) -> list[int]:
        """The root first, then the rest by pid."""
        return sorted(self.cpu, key=lambda pid: (pid != self.root, pid))

    def cpu_since_mark(self, pid: int | None = None) -> float:
        base = self.base or {}
        pids = self.cpu if pid is None else [pid]
        return sum(self.cpu[p] - base.get(p, 0.0) for p in pids)


def drain(
    bootstrap: str,
    sim: SimulatorProcess,
    topic: str,
    n: int,
    created: dict[str, int],
    workdir: Path,
    label: str,
    workers: int,
    others: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Drain ``n`` uploads of ``topic`` with ``run --workers {workers}`` (one worker: a plain
    ``run``, no supervisor), checks CSAM, classification and similarity, ``bench.run``'s settings
    per worker. CPU is counted from the first verdict on, as ``bench.run.run_engine`` does."""
    out = f"bench-verdicts-workers-{label}"
    env = engine_env(bootstrap, sim.url, f"bench-workers-{label}", topic, out)
    args = ["--workers", str(workers)] if workers > 1 else []
    reader = Verdicts(bootstrap, out, created)
    proc = ConsumerProcess(env, log_path=workdir / f"workers-{label}.log", args=args).start()
    assert proc.process is not None
    tree = _Tree(proc.process.pid)
    others0: dict[str, float] = {}
    machine0 = (0, 0)
    seen0 = 0
    processes = 0
    deadline = time.monotonic() + max(600.0, n / 20)
    try:
        while len(reader.seen) < n and time.monotonic() < deadline and proc.alive:
            if tree.base is None and reader.seen:
                tree.mark()
                seen0 = len(reader.seen)
                others0 = {name: proc_cpu_s(pid) for name, pid in (others or {}).items()}
                machine0 = _machine_jiffies()
            else:
                tree.sample()
            processes = max(processes, len(process_tree(tree.root)))
            time.sleep(0.25)
        tree.sample()
        others1 = {name: proc_cpu_s(pid) for name, pid in (others or {}).items()}
        machine1 = _machine_jiffies()
    finally:
        proc.terminate(timeout=120)
        reader.stop()
    count = len(reader.seen) - seen0
    span_s = (max(reader.processed) - min(reader.processed)) / 1000 if len(reader.processed) > 1 else 0.0
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    result: dict[str, Any] = {
        "workers": workers,
        "uploads": len(reader.seen),
        "uploads_per_s": round(len(reader.seen) / span_s, 1) if span_s else 0.0,
        "cpu_ms_per_upload": round(tree.cpu_since_mark() * 1000 / max(1, count), 3),
        "peak_rss_mb": round(sum(tree.peak_rss.values()), 1),
        # the supervisor's first, then its workers'
        "peak_rss_by_process_mb": [round(tree.peak_rss.get(pid, 0.0), 1) for pid in tree.order()],
        # how the work split: each worker's share of the CPU (a worker without partitions idles)
        "cpu_s_by_process": [round(tree.cpu_since_mark(pid), 2) for pid in tree.order()],
        "processes": processes,
        "processes_seen": len(tree.cpu),  # more than ``processes``: a worker was restarted
        "duplicates": sum(c - 1 for c in reader.seen.values()),
        "failed_closed": reader.failed_closed,
        "machine_busy": round(busy / total, 3) if total else None,
    }
    for name, start in others0.items():
        result[f"{name}_cpu_ms_per_upload"] = round((others1[name] - start) * 1000 / max(1, count), 3)
    return result


def chain_latency(
    median_ms: float = MEDIAN_MS, p99_ms: float = P99_MS, samples: int = 100_000
) -> dict[str, float]:
    """Mean and p99 of an upload's check chain, in seconds: the CSAM hash match, then
    classification and the similarity query together (the simulator's log-normal model)."""
    model = LatencyModel(median_ms, p99_ms, rng=random.Random(1))
    chains = sorted(model.sample_s() + max(model.sample_s(), model.sample_s()) for _ in range(samples))
    return {
        "mean_s": round(statistics.fmean(chains), 4),
        "p99_s": round(chains[min(len(chains) - 1, int(0.99 * len(chains)))], 4),
    }


def _ratio(new: float, old: float) -> float | None:
    return round(new / old, 3) if old else None


def compare_workers(
    bootstrap: str,
    sim: SimulatorProcess,
    workdir: Path,
    topic: str,
    n: int,
    created: dict[str, int],
    others: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One worker and ``--workers 2`` on the pre-produced backlog ``topic`` (``n`` uploads),
    ``BENCH_WORKERS_ROUNDS`` (2) rounds, interleaved; medians per worker count and the ratios
    2 workers / 1 worker (throughput above 1 is faster, CPU and RSS above 1 cost more).
    ``others``: pids whose CPU per upload is reported too (the simulator's is by default)."""
    rounds = int(os.environ.get("BENCH_WORKERS_ROUNDS", "2"))
    watched = dict(others or {})
    if sim.process is not None:
        watched.setdefault("simulator", sim.process.pid)
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in WORKERS}
    for r in range(rounds):
        for workers in WORKERS if r % 2 == 0 else tuple(reversed(WORKERS)):
            print(f"workers: {workers}, round {r + 1}/{rounds}: draining {n} uploads...", flush=True)
            label = f"{workers}-{r}-{int(time.time())}"
            runs[workers].append(drain(bootstrap, sim, topic, n, created, workdir, label, workers, watched))
    summary: dict[str, Any] = {"rounds": rounds, "uploads": n, "partitions": PARTITIONS}
    for workers in WORKERS:
        found = runs[workers]
        keys: tuple[str, ...] = ("uploads_per_s", "cpu_ms_per_upload", "peak_rss_mb", "machine_busy")
        keys += tuple(f"{name}_cpu_ms_per_upload" for name in watched)
        figures: dict[str, Any] = {
            key: round(statistics.median(run[key] for run in found), 3)
            for key in keys
            if all(run.get(key) is not None for run in found)
        }
        # one process's peak: the plain ``run``, or the largest worker under the supervisor
        figures["peak_rss_mb_per_worker"] = max(
            max(run["peak_rss_by_process_mb"][-workers:]) for run in found
        )
        # what bounds the rate on this machine: the simulator is one process (one core at most)
        # and the consumer, the simulator and the broker share its cores
        sim_ms = figures.get("simulator_cpu_ms_per_upload")
        if sim_ms:
            figures["simulator_ceiling_per_s"] = round(1000 / sim_ms, 1)
        machine_ms = figures["cpu_ms_per_upload"] + sum(
            figures.get(f"{name}_cpu_ms_per_upload", 0) for name in watched
        )
        figures["machine_ceiling_per_s"] = round((os.cpu_count() or 1) * 1000 / machine_ms, 1)
        figures["duplicates"] = sum(run["duplicates"] for run in found)
        figures["runs"] = found
        summary[f"workers_{workers}"] = figures
    one, two = summary["workers_1"], summary["workers_2"]
    summary["two_vs_one"] = {
        "throughput": _ratio(two["uploads_per_s"], one["uploads_per_s"]),
        "cpu_per_upload": _ratio(two["cpu_ms_per_upload"], one["cpu_ms_per_upload"]),
        "peak_rss": _ratio(two["peak_rss_mb"], one["peak_rss_mb"]),
    }
    chain = chain_latency()
    summary["chain"] = chain
    summary["sizing_inputs"] = {
        # the dearer of the two shapes, so the paper errs towards more cores
        "cpu_ms_per_upload": max(one["cpu_ms_per_upload"], two["cpu_ms_per_upload"]),
        "chain_p99_s": chain["p99_s"],
        "chain_mean_s": chain["mean_s"],
        "peak_rss_mb_per_worker": max(one["peak_rss_mb_per_worker"], two["peak_rss_mb_per_worker"]),
    }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| workers | uploads/s | CPU ms/upload (all processes) | peak RSS MB (all processes)"
        " | simulator CPU ms/upload | simulator ceiling/s | machine ceiling/s | machine busy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workers in WORKERS:
        m = summary[f"workers_{workers}"]
        lines.append(
            f"| {workers} | {m['uploads_per_s']} | {m['cpu_ms_per_upload']} | {m['peak_rss_mb']}"
            f" | {m.get('simulator_cpu_ms_per_upload', '-')} | {m.get('simulator_ceiling_per_s', '-')}"
            f" | {m['machine_ceiling_per_s']} | {m.get('machine_busy', '-')} |"
        )
    ratio = summary["two_vs_one"]
    lines.append(
        f"| 2 / 1 | {ratio['throughput']} | {ratio['cpu_per_upload']} | {ratio['peak_rss']} | | | | |"
    )
    return "\n".join(lines)


# -- on paper -----------------------------------------------------------------------------------


def _ceil(value: float) -> int:
    """``math.ceil`` of a product or quotient of decimal figures, its binary noise ignored (1,000 x
    0.14 is 140.00000000000003)."""
    return math.ceil(round(value, 9))


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, _ceil(value / multiple) * multiple)


def sizing(
    uploads_per_s: float,
    *,
    cpu_ms_per_upload: float,
    calls_per_upload: int = 3,
    chain_p99_s: float,
    chain_mean_s: float | None = None,
    provider_connections_per_in_flight: float = CONNECTIONS_PER_RECORD,
    per_core_headroom: float = 0.6,
    cores_per_pod: int = 1,
    min_pods: int = 2,
    per_partition_ceiling: float | None = None,
    partition_multiple: int = 12,
    peak_rss_mb_per_worker: float | None = None,
) -> dict[str, Any]:
    """What ``uploads_per_s`` uploads a second, each with ``calls_per_upload`` provider calls, need.

    - cores: CPU per upload times the rate / ``per_core_headroom`` (0.6: a core kept 40 % free takes a
      lost pod's share and a burst without falling behind).
    - pods: ``cores_per_pod`` cores each (1), one worker per core (``run --workers cores_per_pod``:
      a worker is one Python process, at most one core), at least ``min_pods`` (2: a pod being
      restarted or moved does not stop moderation). More pods when the busiest worker would
      otherwise exceed one core at the headroom: partitions are whole, so a worker holding
      ``ceil(partitions / workers)`` of them carries that share of the rate.
    - in flight: Little's law, the rate times the chain's **p99** (``chain_mean_s`` gives the
      mean occupancy, reported beside it). ``processing.max_in_flight`` is a cap, not a target:
      sized at the mean it binds as soon as latency rises above the mean (a slow provider spell
      slows every call at once) and throughput drops with it; at the p99 the rate holds through
      such a spell, and the unused part costs nothing but a bound on memory and pooled
      connections. ``in_flight_per_worker``, the setting, is what a worker needs at a whole core
      (1000 / CPU ms per upload, times the p99), not its share of the total: a worker taking over a
      lost pod's partitions is then bound by CPU, never by the cap.
    - provider connections: the consumer's pool rule (``consumer.wiring.provider_pool_size``):
      ``provider_connections_per_in_flight`` (2: classification and the similarity query run
      together) per record in flight: ``provider_connections`` at the target rate (from
      ``in_flight``), ``provider_connections_per_worker`` the pool each worker opens at most (from
      its setting) and ``provider_connections_max`` all pools full; ``provider_calls_per_s`` is
      what the provider's rate limit must allow.
    - partitions: at least one per worker (a worker without one idles), at least the rate /
      ``per_partition_ceiling`` (a partition is consumed by one worker, so its rate must fit in a
      worker; by default half a worker's rate at the headroom, so each worker holds two or more
      and a rebalance moves small shares; never above a worker's rate), rounded up to a multiple of
      ``partition_multiple`` (12 divides evenly over 1, 2, 3, 4, 6 and 12 workers; partitions can
      be added but not removed, and adding one moves keys, so size them for the peak).
    """
    if uploads_per_s <= 0 or cpu_ms_per_upload <= 0 or chain_p99_s <= 0:
        raise ValueError("uploads_per_s, cpu_ms_per_upload and chain_p99_s must be positive")
    if not 0 < per_core_headroom <= 1:
        raise ValueError("per_core_headroom must be in (0, 1]")
    if cores_per_pod < 1 or min_pods < 1 or partition_multiple < 1:
        raise ValueError("cores_per_pod, min_pods and partition_multiple must be at least 1")
    if calls_per_upload < 0 or (per_partition_ceiling is not None and per_partition_ceiling <= 0):
        raise ValueError("calls_per_upload must not be negative, per_partition_ceiling must be positive")
    worker_rate = 1000 / cpu_ms_per_upload * per_core_headroom  # uploads/s one worker carries
    cores = uploads_per_s * cpu_ms_per_upload / 1000 / per_core_headroom
    ceiling = min(per_partition_ceiling or worker_rate / 2, worker_rate)
    pods = max(min_pods, _ceil(cores / cores_per_pod))
    partitions = _round_up(max(pods * cores_per_pod, uploads_per_s / ceiling), partition_multiple)
    # the busiest worker holds ceil(partitions / workers) partitions: it must fit in one core
    while _ceil(partitions / (pods * cores_per_pod)) * uploads_per_s / partitions > worker_rate:
        pods += 1
    workers = pods * cores_per_pod
    in_flight = _ceil(uploads_per_s * chain_p99_s)
    in_flight_per_worker = _ceil(1000 / cpu_ms_per_upload * chain_p99_s)
    connections_per_worker = _ceil(in_flight_per_worker * provider_connections_per_in_flight)
    result: dict[str, Any] = {
        "uploads_per_s": uploads_per_s,
        "cores": round(cores, 2),
        "pods": pods,
        "workers": workers,
        "workers_per_pod": cores_per_pod,
        "in_flight": in_flight,
        "in_flight_basis": "p99",
        "in_flight_mean": _ceil(uploads_per_s * chain_mean_s) if chain_mean_s else None,
        "in_flight_per_worker": in_flight_per_worker,
        "provider_connections": _ceil(in_flight * provider_connections_per_in_flight),
        "provider_connections_per_worker": connections_per_worker,
        "provider_connections_max": connections_per_worker * workers,
        "provider_calls_per_s": round(uploads_per_s * calls_per_upload, 1),
        "partitions": partitions,
        "per_partition_ceiling": round(ceiling, 1),
        "per_partition_rate": round(uploads_per_s / partitions, 1),
        "busiest_worker_rate": round(_ceil(partitions / workers) * uploads_per_s / partitions, 1),
        "worker_rate": round(worker_rate, 1),
    }
    if peak_rss_mb_per_worker is not None:
        result["memory_mb"] = round(peak_rss_mb_per_worker * workers, 1)
    return result


def sizing_table(measured: dict[str, Any], targets: Iterable[float] = TARGETS, **options: Any) -> str:
    """A markdown table of ``sizing`` for each target rate, from the measured figures:
    ``compare_workers``'s summary (its ``sizing_inputs``) or a dict with ``cpu_ms_per_upload``,
    ``chain_p99_s`` and optionally ``chain_mean_s`` and ``peak_rss_mb_per_worker``; ``options``
    go to ``sizing``."""
    inputs = measured.get("sizing_inputs", measured)
    known = ("cpu_ms_per_upload", "chain_p99_s", "chain_mean_s", "peak_rss_mb_per_worker")
    given = {key: inputs[key] for key in known if inputs.get(key) is not None}
    rows = [sizing(target, **given, **options) for target in targets]
    lines = [
        "| uploads/s | cores | pods (1 core, 1 worker) | in flight: p99 (mean) | max_in_flight per worker"
        " | provider connections in use (pool per worker) | provider calls/s | partitions (per partition/s)"
        " | memory MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in rows:
        mean = f" ({s['in_flight_mean']:,})" if s["in_flight_mean"] is not None else ""
        memory = f"{s['memory_mb']:,.0f}" if "memory_mb" in s else "-"
        lines.append(
            f"| {s['uploads_per_s']:,} | {s['cores']:,} | {s['pods']:,} | {s['in_flight']:,}{mean}"
            f" | {s['in_flight_per_worker']:,} | {s['provider_connections']:,}"
            f" ({s['provider_connections_per_worker']:,}) | {s['provider_calls_per_s']:,.0f}"
            f" | {s['partitions']:,} ({s['per_partition_rate']:,}) | {memory} |"
        )
    basis = (
        f"CPU {inputs['cpu_ms_per_upload']} ms/upload at {options.get('per_core_headroom', 0.6):.0%} of"
        f" a core; chain p99 {inputs['chain_p99_s']} s"
    )
    return "\n".join(lines) + f"\n\n{basis}"


def main() -> int:
    n = int(os.environ.get("BENCH_UPLOADS", "10000"))
    workdir = Path(tempfile.mkdtemp(prefix="moderation-bench-workers-"))
    kafka = LocalKafka(workdir / "kafka", heap="1g")
    sim = SimulatorProcess(latency_median_ms=MEDIAN_MS, latency_p99_ms=P99_MS, log_path=workdir / "sim.log")
    try:
        bootstrap = kafka.start()
        sim.start()
        ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), ["bench-uploads"], partitions=PARTITIONS)
        print(f"producing {n} image uploads over {PARTITIONS} partitions...", flush=True)
        uploads = list(image_uploads("w", n))
        produce_uploads(bootstrap, "bench-uploads", uploads)
        assert kafka.process is not None
        summary = compare_workers(
            bootstrap,
            sim,
            workdir,
            "bench-uploads",
            n,
            {u.upload_id: u.created_at for u in uploads},
            others={"broker": kafka.process.pid},
        )
    finally:
        sim.stop()
        kafka.stop()
    summary["machine"] = {"cpus": os.cpu_count()}
    print(json.dumps(summary, default=str, indent=1)[:20000])
    print(table(summary))
    print("2 workers / 1 worker:", json.dumps(summary["two_vs_one"]))
    print()
    print(sizing_table(summary))
    out = Path(__file__).parent / "results" / "workers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
