"""The metrics the service exports: provider requests by provider, check and status class; partition
gauges that forget revoked partitions; the lag arithmetic; end-to-end latency and fail-closed
verdicts counted when a verdict is acknowledged; one exposition for every ``--workers`` worker."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.config import load_settings
from consumer.core.offsets import OffsetTracker
from consumer.core.records import Decision, MediaType, Reason
from consumer.core.scheduler import Scheduler, Work
from consumer.delivery.outputs import Outputs, Received
from consumer.kafka.lag import lag
from consumer.runtime import workers
from consumer.runtime.workers import Worker
from consumer.serde import AvroCodec
from consumer.telemetry import metrics

from .test_serde import a_verdict, an_upload


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: make prometheus (Debian's prometheus package)"
    return found


@pytest.mark.parametrize(
    ("status", "outcome", "expected"),
    [
        (200, "ok", "2xx"),
        (404, "ok", "4xx"),
        (429, "overload", "429"),
        (503, "overload", "5xx"),
        (500, "failure", "5xx"),
        (0, "overload", "timeout"),
        (0, "failure", "error"),
    ],
)
def test_status_classes(status: int, outcome: str, expected: str) -> None:
    assert metrics.status_class(status, outcome) == expected


def test_provider_requests_are_counted_by_provider_check_and_status_class() -> None:
    labels = {"provider": "huawei", "check": "similarity-test", "status_class": "429"}
    before = value("moderation_provider_requests_total", **labels)
    metrics.count_request("ImageSearch", "similarity-test", 429, "overload", 0.02)
    metrics.count_request("ImageSearch", "similarity-test", 429, "overload", 0.03)
    metrics.count_request("Hive", "visual-test", 200, "ok", 0.01)
    assert value("moderation_provider_requests_total", **labels) == before + 2
    assert value(
        "moderation_provider_requests_total", provider="hive", check="visual-test", status_class="2xx"
    )
    durations = value(
        "moderation_provider_request_duration_seconds_count", provider="huawei", check="similarity-test"
    )
    assert durations >= 2


def test_partition_gauges_drop_the_series_of_partitions_no_longer_shown() -> None:
    shown = metrics.set_partitions(metrics.WAITING, {("t-gauge", 0): 3, ("t-gauge", 1): 0}, set())
    assert value("moderation_partition_waiting_records", topic="t-gauge", partition="0") == 3
    shown = metrics.set_partitions(metrics.WAITING, {("t-gauge", 1): 7}, shown)
    assert shown == {("t-gauge", 1)}
    exposition = generate_latest(metrics.REGISTRY).decode()
    assert 'partition="0",topic="t-gauge"' not in exposition
    assert value("moderation_partition_waiting_records", topic="t-gauge", partition="1") == 7
    metrics.set_partitions(metrics.WAITING, {}, shown)


def test_lag_is_the_log_end_minus_the_committed_position_else_the_log_start() -> None:
    ends = {("u", 0): 120, ("u", 1): 50, ("u", 2): 10, ("u", 3): 7}
    positions = {("u", 0): 100, ("u", 1): 60, ("u", 2): None, ("u", 3): None}
    starts = {("u", 2): 4}
    assert lag(ends, positions, starts) == {("u", 0): 20, ("u", 1): 0, ("u", 2): 6}


def test_the_tracker_position_is_the_commit_else_the_first_unfinished_offset() -> None:
    tracker = OffsetTracker()
    assert tracker.position(("u", 0)) is None
    tracker.track(("u", 0), 5)
    tracker.track(("u", 0), 6)
    assert tracker.position(("u", 0)) == 5
    tracker.complete(("u", 0), 5)
    tracker.mark_committed(tracker.committable())
    tracker.complete(("u", 0), 6)
    assert tracker.position(("u", 0)) == 6  # finished but not committed yet: the commit counts
    tracker.restore(("u", 1), 40, None)
    assert tracker.position(("u", 1)) == 40


def test_the_scheduler_reports_waiting_records_per_partition() -> None:
    scheduler = Scheduler(max_records=1)
    for offset in range(3):
        scheduler.offer(Work(("u", 0), offset, b"k", 1))
    scheduler.offer(Work(("u", 1), 0, b"k", 1))
    assert scheduler.queued_by_partition() == {("u", 0): 3, ("u", 1): 1}
    assert len(scheduler.ready()) == 1
    assert sum(scheduler.queued_by_partition().values()) == 3


@dataclass
class AckingSink:
    """Acknowledges every output when told to."""

    pending: list[Any] = field(default_factory=list)

    def produce(self, topic: str, key: Any, value: Any, headers: Any = None, on_delivery: Any = None) -> None:
        self.pending.append(on_delivery)

    def acknowledge(self) -> None:
        for callback in self.pending:
            callback(None)
        self.pending.clear()


class Message:
    def headers(self) -> None:
        return None


def outputs(sink: AckingSink) -> tuple[Outputs, list[Work[Received]]]:
    completed: list[Work[Received]] = []
    out = Outputs(
        load_settings().kafka,
        AvroCodec(),
        sink,  # type: ignore[arg-type]
        exactly_once=False,
        release=lambda work: None,
        complete=completed.append,
        current=lambda work: True,
        fail=lambda exc: None,
    )
    return out, completed


def test_end_to_end_latency_is_observed_when_every_output_is_acknowledged() -> None:
    sink = AckingSink()
    out, completed = outputs(sink)
    upload = an_upload(created_at=int(time.time() * 1000) - 2_000, media_type=MediaType.GIF)
    verdict = dataclasses.replace(a_verdict(), decision=Decision.REVIEW)  # verdict and review copy
    count = "moderation_end_to_end_latency_seconds_count"
    before = value(count, media_type="GIF")
    slow = value("moderation_end_to_end_latency_seconds_bucket", media_type="GIF", le="1.0")
    out.verdict(Work(("uploads", 0), 7, b"k", 1, Received(Message(), 1)), upload, verdict)  # type: ignore[arg-type]
    assert len(sink.pending) == 2 and value(count, media_type="GIF") == before  # not acknowledged yet
    sink.acknowledge()
    assert completed and value(count, media_type="GIF") == before + 1
    # two seconds old: above the 1 s bucket
    assert value("moderation_end_to_end_latency_seconds_bucket", media_type="GIF", le="1.0") == slow


def test_verdicts_failing_closed_are_counted() -> None:
    sink = AckingSink()
    out, _ = outputs(sink)
    before = value("moderation_fail_closed_verdicts_total")
    unavailable = Reason("visual", "check_unavailable:visual", detail="no answer within 30s")
    work = Work(("uploads", 0), 8, b"k", 1, Received(Message(), 1))  # type: ignore[arg-type]
    out.verdict(work, an_upload(), dataclasses.replace(a_verdict(), reasons=(unavailable,)))
    out.verdict(work, an_upload(), a_verdict())
    assert value("moderation_fail_closed_verdicts_total") == before + 1


def test_rebalance_kinds_transactions_and_decisions_exist_before_any_happens() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    for kind in ("assigned", "revoked", "lost"):
        assert f'moderation_rebalances_total{{kind="{kind}"}}' in text
    assert 'moderation_transactions_total{outcome="aborted"}' in text
    assert 'moderation_verdicts_total{decision="ESCALATE"}' in text
    assert "process_cpu_seconds_total" in text and "python_gc_collections_total" in text
    assert 'moderation_build_info{version="' in text
    assert "_created" not in text


def test_the_exposition_passes_promtool_check_metrics() -> None:
    run = subprocess.run(
        [promtool(), "check", "metrics"], input=generate_latest(metrics.REGISTRY), capture_output=True
    )
    assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()


def test_workers_expositions_merge_with_a_worker_label_and_worker_up() -> None:
    own = generate_latest(metrics.REGISTRY).decode()
    merged = workers.merge({0: own, 1: own, 2: None}).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    verdicts = [s for s in families["moderation_verdicts"].samples if s.labels["decision"] == "ALLOW"]
    assert sorted(s.labels["worker"] for s in verdicts) == ["0", "1"]
    up = {s.labels["worker"]: s.value for s in families["moderation_worker_up"].samples}
    assert up == {"0": 1.0, "1": 1.0, "2": 0.0}
    run = subprocess.run([promtool(), "check", "metrics"], input=merged.encode(), capture_output=True)
    assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()


@contextlib.asynccontextmanager
async def _peer(body: bytes) -> AsyncIterator[int]:
    """A server on a free loopback port answering ``/metrics`` like a worker, with ``body``."""
    from aiohttp import web

    async def peer_metrics(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", peer_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def test_worker_zero_serves_every_announced_worker(tmp_path: Path) -> None:
    """Worker 1 announces its port; worker 0's exposition reads it (here: a server that answers
    like a worker), and reports worker 2, which never announced, as down."""
    body = b"# TYPE moderation_in_flight_records gauge\nmoderation_in_flight_records 3\n"
    async with _peer(body) as port:
        workers.announce(Worker(1, 3, tmp_path), "0.0.0.0", port)
        assert workers.peers(tmp_path) == {1: f"http://127.0.0.1:{port}"}
        text = (await workers.exposition(Worker(0, 3, tmp_path))).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
    in_flight = {s.labels["worker"]: s.value for s in families["moderation_in_flight_records"].samples}
    assert in_flight["1"] == 3 and "0" in in_flight
    up = {s.labels["worker"]: s.value for s in families["moderation_worker_up"].samples}
    assert up == {"0": 1.0, "1": 1.0, "2": 0.0}


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:9100"), ("10.1.2.3", "http://10.1.2.3:9100"), ("::", "http://[::1]:9100")],
)
def test_a_worker_announces_where_it_can_be_reached(host: str, url: str, tmp_path: Path) -> None:
    workers.announce(Worker(0, 3, tmp_path), host, 9000)  # worker 0 is scraped itself: nothing to announce
    workers.announce(Worker(2, 3, tmp_path), host, 9100)
    assert workers.peers(tmp_path) == {2: url}


async def test_alone_the_exposition_is_this_process_unlabelled() -> None:
    text = (await workers.exposition(Worker())).decode()
    assert "worker=" not in text and "moderation_worker_up" not in text


async def test_a_peer_answering_an_endless_exposition_counts_as_down(tmp_path: Path) -> None:
    """Worker 0 reads at most PEER_MAX_BYTES of a peer's answer; past that, the peer is down."""
    async with _peer(b"# filler\n" * (workers.PEER_MAX_BYTES // 9 + 2)) as port:
        workers.announce(Worker(1, 2, tmp_path), "127.0.0.1", port)
        text = (await workers.exposition(Worker(0, 2, tmp_path))).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
    up = {s.labels["worker"]: s.value for s in families["moderation_worker_up"].samples}
    assert up == {"0": 1.0, "1": 0.0}
