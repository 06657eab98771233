"""Consumer lag per partition is right while it matters: it keeps growing while every partition is
paused (a slow provider), which the consumer's own statistics cannot see (a paused partition is
not fetched), and it returns to 0 once everything is committed; records waiting per partition
follow the scheduler's buffer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consumer.core.records import MediaType
from consumer.runtime import watch
from consumer.telemetry import metrics
from moderation_devtools.stack import SimulatorProcess, produce_uploads, upload, wait_until_async

from .conftest import Topics

pytestmark = pytest.mark.integration


def total(name: str, topic: str) -> float:
    return sum(
        metrics.REGISTRY.get_sample_value(name, {"topic": topic, "partition": str(p)}) or 0.0
        for p in range(4)
    )


async def test_lag_grows_while_partitions_are_paused_and_returns_to_zero(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch, "OBSERVE_INTERVAL_S", 0.3)
    sim.admin("/_admin/latency", json={"median_ms": 2000, "p99_ms": 2500})
    settings = settings_for(topics, max_in_flight=2, partition_buffer=4, check_deadline_s=60)
    settings.hive.timeout_s = 30
    lag, waiting = "moderation_consumer_lag_records", "moderation_partition_waiting_records"
    async with running_service(settings) as service:
        assert await wait_until_async(lambda: service.progress.assigned > 0, 60), "never assigned"
        first = [upload(MediaType.TEXT, text=f"slow {i}") for i in range(40)]
        produce_uploads(kafka_bootstrap, topics.input, first)
        assert await wait_until_async(lambda: service.progress.scheduler.paused > 0, 30), "never paused"
        assert await wait_until_async(lambda: total(lag, topics.input) >= 30, 30), total(lag, topics.input)
        assert await wait_until_async(lambda: total(waiting, topics.input) > 0, 10)
        before = total(lag, topics.input)
        produce_uploads(
            kafka_bootstrap, topics.input, [upload(MediaType.TEXT, text=f"more {i}") for i in range(40)]
        )
        grew = await wait_until_async(lambda: total(lag, topics.input) >= before + 30, 30)
        assert grew, f"lag {total(lag, topics.input)} did not grow from {before} while paused"
        sim.admin("/_admin/latency", json={"median_ms": 0, "p99_ms": 0})
        assert await wait_until_async(lambda: service.processed >= 80, 120), "not all verdicts"
        assert await wait_until_async(lambda: total(lag, topics.input) == 0, 30), total(lag, topics.input)
        assert total(waiting, topics.input) == 0
    assert total(lag, topics.input) == 0  # the series of a stopped service are gone
