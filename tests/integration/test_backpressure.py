"""Backpressure on the real broker: a slow provider fills the bound, partitions pause, then resume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from consumer.devtools.stack import SimulatorProcess, produce_uploads, read_verdicts, upload
from consumer.records import MediaType
from consumer.telemetry import metrics

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
            assert service.scheduler.in_flight <= 3
            await asyncio.wait({reader}, timeout=0.02)
        verdicts = reader.result()
    assert {v.upload_id for v in verdicts} >= {u.upload_id for u in uploads}
    assert 1 <= peak_in_flight <= 3
    assert peak_paused >= 1, "a partition holding more than 5 waiting records must have been paused"
    assert gauge("moderation_paused_partitions") == 0  # every partition resumed once drained
