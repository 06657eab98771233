"""exactly_once delivery: verdicts and input offsets in one transaction; a read_committed reader
sees one verdict per upload, also when the producer is fenced mid-stream and rebuilt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from consumer.core.records import MediaType
from consumer.telemetry import metrics
from moderation_devtools.stack import VerdictCollector, produce_uploads, upload, wait_until_async

from .conftest import Topics

pytestmark = pytest.mark.integration


def rebuilt() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "moderation_transactions_total", {"outcome": "producer_rebuilt"}
    )
    return value or 0.0


async def test_each_upload_has_one_committed_verdict_through_a_fencing(
    kafka_bootstrap: str,
    topics: Topics,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    accounting: Callable[[str], None],
) -> None:
    first = [upload(MediaType.TEXT, upload_id=f"eos-a{i}", text=f"hello {i}") for i in range(300)]
    then = [upload(MediaType.TEXT, upload_id=f"eos-b{i}", text=f"again {i}") for i in range(300)]
    expected = {u.upload_id for u in first + then}
    settings = settings_for(topics, delivery="exactly_once", transaction_interval_ms=50)
    settings.kafka.transactional_id = f"{topics.group}-eos-test"
    before = rebuilt()
    with VerdictCollector(kafka_bootstrap, topics.verdicts, isolation="read_committed") as seen:
        async with running_service(settings) as service:
            produce_uploads(kafka_bootstrap, topics.input, first)
            assert await asyncio.to_thread(seen.wait_until, lambda c: len(c) >= 100, 60)
            # a zombie with the same transactional id fences the service's producer mid-stream
            zombie = Producer(
                {"bootstrap.servers": kafka_bootstrap, "transactional.id": settings.kafka.transactional_id}
            )
            await asyncio.to_thread(zombie.init_transactions, 30)
            produce_uploads(kafka_bootstrap, topics.input, then)
            assert await asyncio.to_thread(seen.wait_until, lambda c: expected <= set(c), 90)
            assert await wait_until_async(lambda: not service.progress.tracker.committable(), 30)
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"http://127.0.0.1:{service.watch.port}/readyz")
            zombie.close()
        counts = seen.accounting(expected)
    accounting(
        f"accounting: uploads={counts['uploads']} verdicts={counts['verdicts']}"
        f" duplicates={counts['duplicates']} dead_letters=0 missing={counts['missing']}"
        f" producer_rebuilds={rebuilt() - before:g}"
    )
    assert counts["duplicates"] == 0 and counts["missing"] == 0
    assert counts["verdicts"] == len(expected)
    assert rebuilt() > before, "the fencing was never noticed"
    assert ready.status_code == 200 and ready.json()["assigned"] > 0
