"""/healthz and /readyz reflect real state: ready once assigned and consuming; a partition whose
oldest record hangs past the stall deadline makes it unready (log, counter) until it moves again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from consumer.core.records import MediaType
from consumer.telemetry import metrics
from moderation_devtools.stack import SimulatorProcess, produce_uploads, upload, wait_until_async

from .conftest import Topics

pytestmark = pytest.mark.integration


async def test_readiness_follows_assignment_and_stalls(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    settings = settings_for(topics, stall_after_s=1.0, check_deadline_s=60)
    settings.hive.timeout_s = 30
    stalls_before = metrics.REGISTRY.get_sample_value("moderation_partition_stalls_total") or 0.0
    async with running_service(settings) as service, httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{await _port(service)}"

        async def status(path: str) -> int:
            return (await client.get(base + path)).status_code

        assert await status("/healthz") == 200

        async def becomes(code: int) -> bool:
            """The probe turns to ``code`` within the deadline, and HTTP says so too."""
            if not await wait_until_async(lambda: (200 if service.watch.ready().ok else 503) == code, 20):
                return False
            return await status("/readyz") == code

        assert await becomes(200), "never ready though assigned"
        sim.admin("/_admin/faults", json={"hang": 1.0, "hang_s": 4})
        produce_uploads(kafka_bootstrap, topics.input, [upload(MediaType.TEXT, text="held up")])
        assert await becomes(503), "a hung record never made the service unready"
        body = (await client.get(base + "/readyz")).json()
        assert body["stalled"] and body["assigned"] > 0
        assert await status("/healthz") == 200  # stalled is not dead: no restart for a slow provider
        sim.admin("/_admin/faults", json={"hang": 0.0})
        assert await becomes(200), "still unready after the record finished"
        metrics_text = (await client.get(base + "/metrics")).text
    stalls = metrics.REGISTRY.get_sample_value("moderation_partition_stalls_total") or 0.0
    assert stalls > stalls_before and "moderation_stalled_partitions" in metrics_text


async def _port(service: Any) -> int:
    assert await wait_until_async(lambda: service.watch.port is not None, 30)
    port: int = service.watch.port
    return port
