"""Promise 1 at its root: an input offset is committed only once its verdict is acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.core.records import MediaType
from consumer.errors import DeliveryError
from consumer.wiring import assembled, provider_client
from moderation_devtools.stack import SimulatorProcess, produce_uploads, upload, wait_until_async

from .conftest import Topics

pytestmark = pytest.mark.integration


async def test_no_offset_is_committed_for_verdicts_the_broker_never_acknowledges(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
) -> None:
    topics = make_topics(input_partitions=1)
    uploads = [upload(MediaType.TEXT, upload_id=f"ack-{i}", text=f"message {i}") for i in range(5)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    settings = settings_for(topics, drain_timeout_s=5)
    # verdicts go to a topic that does not exist (the broker creates none): none is ever acknowledged
    settings.kafka.verdict_topic = f"missing-{topics.group}"
    settings.kafka.client_config = {"message.timeout.ms": 3000}
    stop = asyncio.Event()
    async with provider_client(settings) as http, assembled(settings, http, stop) as service:
        run = asyncio.create_task(service.run(stop))
        assert await wait_until_async(run.done, 60), "the service must stop on an unacknowledged verdict"
        stop.set()
    assert isinstance(run.exception(), DeliveryError)
    assert service.processed >= 1  # verdicts were produced, and all of them failed
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topics.group})
    try:
        (position,) = await asyncio.to_thread(probe.committed, [TopicPartition(topics.input, 0)], 10)
    finally:
        probe.close()
    print(f"\naccounting (unacknowledged): processed={service.processed} committed={position.offset}")
    # nothing committed, or offset 0 ("read from the first upload on") with no completions beyond it
    assert position.offset <= 0, "the commit passed an upload whose verdict was never acknowledged"
    assert not position.metadata
