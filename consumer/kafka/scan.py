"""One pass over a topic for the tools (``dlq replay``, ``policy backtest``): chosen partitions from
chosen offsets up to the end each had when the pass started, so a tool never chases records
written meanwhile (its own output included). No group offsets are committed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Message, TopicPartition

from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["Bounds", "scan", "watermarks"]

IDLE_S = 5.0  # a pass ends when nothing more arrives for this long (the ends are not all reached)

# (consumer, topic, partitions) -> partition -> (first offset, end offset): which records to read
Bounds = Callable[[Consumer, str, list[int]], dict[int, tuple[int, int]]]


@contextmanager
def scan(
    kafka: KafkaSettings, topic: str, purpose: str, bounds: Bounds, partition: int | None = None
) -> Iterator[Iterator[Message]]:
    """The records of ``topic`` in the ``bounds`` (of ``partition``, or of every partition), read
    committed. RuntimeError when the topic does not exist."""
    consumer = Consumer(
        {
            **base_config(kafka),
            "group.id": f"{kafka.group_id}.{purpose}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {topic} does not exist")
        partitions = sorted(p for p in meta.partitions if partition is None or p == partition)
        chosen = {
            p: (start, end) for p, (start, end) in bounds(consumer, topic, partitions).items() if start < end
        }
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in chosen.items()])
        yield _records(consumer, topic, {p: end for p, (_, end) in chosen.items()})
    finally:
        consumer.close()


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(low, high) of one partition."""
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
    return int(low), int(high)


def _records(consumer: Consumer, topic: str, ends: dict[int, int]) -> Iterator[Message]:
    idle_since = time.monotonic()
    while ends and time.monotonic() - idle_since < IDLE_S:
        for msg in consumer.consume(500, 0.5):
            if msg.error():
                continue
            idle_since = time.monotonic()
            if (msg.offset() or 0) < ends.get(msg.partition() or 0, 0):
                yield msg
        # a position, not the last record's offset, says a partition is done: transaction
        # markers take offsets too
        for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
            if tp.offset >= ends[tp.partition]:
                ends.pop(tp.partition)
