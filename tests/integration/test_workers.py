"""``run --workers 2``: two worker processes in one group; a killed worker is restarted; SIGTERM
stops them all cleanly; no upload is lost."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from consumer.core.records import MediaType
from devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    VerdictCollector,
    consumer_env,
    produce_uploads,
    upload,
    wait_until,
)

pytestmark = pytest.mark.integration


def _lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        try:
            found.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return found


def _wait_lines(path: Path, msg: str, count: int, within_s: float = 60.0) -> list[dict[str, Any]]:
    if not wait_until(
        lambda: len([line for line in _lines(path) if line.get("msg") == msg]) >= count, within_s
    ):
        raise AssertionError(f"fewer than {count} {msg!r} lines in {path}")
    return [line for line in _lines(path) if line.get("msg") == msg]


def _owners(log: Path, topic: str) -> set[int]:
    return {
        line["process"]
        for line in _lines(log)
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
