"""Lag in time and uploads appended against a real broker: while a slow provider keeps the consumer
behind its input, ``moderation_consumer_lag_seconds`` grows with the age of the oldest record held
(never older than the records themselves) and goes back to 0 once everything is done;
``moderation_uploads_appended_total`` counts exactly the records appended to the input topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from consumer.core.records import MediaType
from consumer.telemetry import metrics
from moderation_devtools.stack import SimulatorProcess, produce_uploads, upload, wait_until_async

from .conftest import Topics

pytestmark = pytest.mark.integration


def per_partition(name: str, topic: str) -> dict[int, float]:
    """The gauge's value per partition of ``topic`` that has a series."""
    found = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("topic") == topic:
                found[int(sample.labels["partition"])] = sample.value
    return found


def appended() -> float:
    return metrics.REGISTRY.get_sample_value("moderation_uploads_appended_total") or 0.0


async def test_lag_in_time_follows_the_oldest_record_held_and_appended_counts_the_input(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.admin("/_admin/latency", json={"median_ms": 2000, "p99_ms": 2500})
    settings = settings_for(topics, max_in_flight=2, partition_buffer=4, check_deadline_s=60)
    settings.hive.timeout_s = 30
    seconds = "moderation_consumer_lag_seconds"
    async with running_service(settings) as service:
        assert await wait_until_async(lambda: service.progress.assigned > 0, 60), "never assigned"
        # a round of the watch has read the log ends of the assigned partitions: the baseline
        assert await wait_until_async(
            lambda: bool(per_partition("moderation_consumer_lag_records", topics.input)), 30
        )
        assert set(per_partition(seconds, topics.input).values()) == {0.0}  # nothing held yet
        before, started = appended(), time.time()
        uploads = [upload(MediaType.TEXT, text=f"slow {i}") for i in range(40)]
        produce_uploads(kafka_bootstrap, topics.input, uploads)

        def oldest() -> float:
            return max(per_partition(seconds, topics.input).values(), default=0.0)

        # about one upload a second goes through: the oldest record held ages
        assert await wait_until_async(lambda: oldest() >= 6, 60), oldest()
        assert oldest() <= time.time() - started + 1  # no older than the records themselves
        assert await wait_until_async(lambda: appended() - before == len(uploads), 30), appended() - before

        sim.admin("/_admin/latency", json={"median_ms": 0, "p99_ms": 0})
        assert await wait_until_async(lambda: service.processed >= len(uploads), 120), "not all verdicts"
        assert await wait_until_async(lambda: oldest() == 0, 30), per_partition(seconds, topics.input)
        assert appended() - before == len(uploads)  # verdicts go elsewhere: the input moved by 40
    assert per_partition(seconds, topics.input) == {}  # the series of a stopped service are gone
