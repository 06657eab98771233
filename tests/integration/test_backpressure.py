"""Backpressure on the real broker: a slow provider fills the bound, partitions pause, then resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from consumer.core.records import MediaType
from consumer.telemetry import metrics
from moderation_devtools.stack import (
    SimulatorProcess,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until_async,
)

from .conftest import Topics

pytestmark = pytest.mark.integration


def gauge(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


async def test_a_slow_provider_pauses_partitions_and_bounds_in_flight_work(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.admin("/_admin/latency", json={"median_ms": 30, "p99_ms": 60})
    uploads = [upload(MediaType.TEXT, upload_id=f"bp-{i}", text=f"message {i}") for i in range(120)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    settings = settings_for(topics, max_in_flight=3, partition_buffer=5)
    peak_in_flight = peak_paused = 0.0
    async with running_service(settings) as service:
        reader = asyncio.create_task(
            asyncio.to_thread(
                read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=120
            )
        )
        while not reader.done():
            peak_in_flight = max(peak_in_flight, gauge("moderation_in_flight_records"))
            peak_paused = max(peak_paused, gauge("moderation_paused_partitions"))
            assert service.progress.scheduler.in_flight <= 3
            await asyncio.wait({reader}, timeout=0.02)
        verdicts = reader.result()
    assert {v.upload_id for v in verdicts} >= {u.upload_id for u in uploads}
    assert 1 <= peak_in_flight <= 3
    assert peak_paused >= 1, "a partition holding more than 5 waiting records must have been paused"
    assert gauge("moderation_paused_partitions") == 0  # every partition resumed once drained


async def test_a_provider_outage_holds_intake_instead_of_failing_uploads(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    """Every call answers 503: the circuit opens, intake is held (no fail-closed verdicts even well
    past the check deadline), and once the provider recovers every upload gets its real verdict."""
    sim.set_faults({"503": 1.0})
    uploads = [upload(MediaType.TEXT, upload_id=f"out-{i}", text=f"message {i}") for i in range(30)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    settings = settings_for(
        topics,
        limits={"breaker_threshold": 2, "breaker_cooldown_s": 0.2},
        max_in_flight=4,
        check_deadline_s=0.5,
        retry_attempts=2,
        retry_base_delay_s=0.01,
    )
    async with running_service(settings):
        assert await wait_until_async(lambda: gauge("moderation_intake_held") == 1, 30)
        held_since = time.monotonic()
        # several check deadlines pass while the circuit stays open
        assert await wait_until_async(lambda: time.monotonic() - held_since > 2.0, 10)
        assert gauge("moderation_intake_held") == 1
        sim.set_faults({"503": 0.0})
        verdicts = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=60
        )
    assert {v.upload_id for v in verdicts} == {u.upload_id for u in uploads}
    unavailable = [v.upload_id for v in verdicts if any("unavailable" in r.label for r in v.reasons)]
    assert unavailable == [], f"failed closed during the outage: {unavailable}"
    assert gauge("moderation_intake_held") == 0
