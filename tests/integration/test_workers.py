"""``run --workers 2``: two worker processes in one group; a killed worker is restarted; SIGTERM
stops them all cleanly; no upload is lost; worker 0's ``/metrics`` has every worker's series."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.core.records import MediaType
from moderation_devtools.broker import free_port
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    VerdictCollector,
    consumer_env,
    json_log_lines,
    produce_uploads,
    upload,
    wait_until,
)

pytestmark = pytest.mark.integration


def _wait_lines(path: Path, msg: str, count: int, within_s: float = 60.0) -> list[dict[str, Any]]:
    if not wait_until(
        lambda: len([line for line in json_log_lines(path) if line.get("msg") == msg]) >= count, within_s
    ):
        raise AssertionError(f"fewer than {count} {msg!r} lines in {path}")
    return [line for line in json_log_lines(path) if line.get("msg") == msg]


def _owners(log: Path, topic: str) -> set[int]:
    return {
        line["process"]
        for line in json_log_lines(log)
        if line.get("msg") == "partitions assigned" and any(p.startswith(topic) for p in line["partitions"])
    }


def test_workers_share_the_group_survive_a_crash_and_stop_cleanly(
    kafka_bootstrap: str, sim: SimulatorProcess, make_topics: Any, tmp_path: Path
) -> None:
    topics = make_topics(input_partitions=6, other_partitions=1)
    sim.admin("/_admin/latency", json={"median_ms": 20, "p99_ms": 50})
    uploads = [upload(MediaType.TEXT, upload_id=f"w-{i}", text=f"hello {i}") for i in range(400)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    env = consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_PROCESSING__MAX_IN_FLIGHT="4",
        MODERATION_KAFKA__CLIENT_CONFIG='{"session.timeout.ms": "6000"}',
    )
    log = tmp_path / "supervisor.log"
    supervisor = ConsumerProcess(env, log_path=log, args=["--workers", "2"]).start()
    expected = {u.upload_id for u in uploads}
    try:
        with VerdictCollector(kafka_bootstrap, topics.verdicts) as verdicts:
            started = _wait_lines(log, "worker started", 2)
            assert verdicts.wait_until(lambda c: len(c) >= 40, timeout=90)
            pids = {w["pid"] for w in started}
            assert wait_until(lambda: _owners(log, topics.input) == pids, 60), "both workers must own uploads"
            os.kill(started[0]["pid"], signal.SIGKILL)
            _wait_lines(log, "worker exited; restarting", 1)
            _wait_lines(log, "worker started", 3)
            assert verdicts.wait_until(lambda c: expected <= set(c), timeout=120)
            account = verdicts.accounting(expected)
    finally:
        code = supervisor.terminate(timeout=90)
    print(f"\naccounting (2 workers, one killed): {account}")
    assert code == 0
    assert account["missing"] == 0
    assert _wait_lines(log, "all workers stopped", 1, within_s=5)


def _scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


def _by_worker(text: str, family: str, **labels: str) -> dict[str, float]:
    """The samples of ``family`` matching ``labels``, by their ``worker`` label."""
    found: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        for s in metric.samples:
            if s.name == family and labels.items() <= s.labels.items():
                found[s.labels["worker"]] = found.get(s.labels["worker"], 0.0) + s.value
    return found


def test_worker_zero_serves_every_workers_metrics(
    kafka_bootstrap: str, sim: SimulatorProcess, make_topics: Any, tmp_path: Path
) -> None:
    """One scrape target for the whole pod: worker 0 on ``health.port`` answers with its own series
    and worker 1's (labelled ``worker``); a restarted worker announces its new port and is scraped
    again."""
    topics = make_topics(input_partitions=4, other_partitions=1)
    port = free_port()
    env = consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_HEALTH__PORT=str(port),
        MODERATION_PROCESSING__MAX_IN_FLIGHT="4",
        MODERATION_KAFKA__CLIENT_CONFIG='{"session.timeout.ms": "6000"}',
    )
    log = tmp_path / "supervisor.log"
    supervisor = ConsumerProcess(env, log_path=log, args=["--workers", "2"]).start()
    uploads = [upload(MediaType.TEXT, upload_id=f"m-{i}", text=f"hello {i}") for i in range(200)]
    try:
        started = _wait_lines(log, "worker started", 2)
        pids = {w["pid"] for w in started}
        assert wait_until(lambda: _owners(log, topics.input) == pids, 60), "both workers must own uploads"
        with VerdictCollector(kafka_bootstrap, topics.verdicts) as verdicts:
            produce_uploads(kafka_bootstrap, topics.input, uploads)
            assert verdicts.wait_until(lambda c: {u.upload_id for u in uploads} <= set(c), timeout=90)

        def both_counted() -> bool:
            counted = _by_worker(_scrape(port), "moderation_verdicts_total")
            return set(counted) == {"0", "1"} and all(counted.values()) and sum(counted.values()) >= 200

        assert wait_until(both_counted, 30), _scrape(port)
        text = _scrape(port)
        assert _by_worker(text, "moderation_worker_up") == {"0": 1.0, "1": 1.0}
        assert set(_by_worker(text, "process_cpu_seconds_total")) == {"0", "1"}
        promtool = shutil.which("promtool")
        assert promtool, "promtool is missing: make prometheus"
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr

        first_start = _by_worker(text, "process_start_time_seconds")["1"]
        worker_one = next(w["pid"] for w in started if w["worker"] == 1)
        os.kill(worker_one, signal.SIGKILL)
        _wait_lines(log, "worker started", 3)

        def restarted_and_scraped() -> bool:
            now = _scrape(port)
            restarted = _by_worker(now, "process_start_time_seconds").get("1", first_start) != first_start
            return restarted and _by_worker(now, "moderation_worker_up").get("1") == 1.0

        assert wait_until(restarted_and_scraped, 60), "the restarted worker was not scraped again"
    finally:
        code = supervisor.terminate(timeout=90)
    assert code == 0
