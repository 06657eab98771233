"""One pass over a topic for the tools (``dlq replay``, ``policy backtest``): chosen partitions from
chosen offsets up to the end each had when the pass started, so a tool never chases records
written meanwhile (its own output included). No group offsets are committed. Kafka's errors come
out as ``BrokerError``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from consumer.errors import BrokerError
from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["Bounds", "Offsets", "scan"]

IDLE_S = 5.0  # a pass ends when nothing more arrives for this long (the ends are not all reached)
_TIMEOUT_S = 30


class Offsets:
    """What a pass's ``bounds`` may ask about the topic before it starts reading."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self._consumer = consumer
        self.topic = topic

    def watermarks(self, partition: int) -> tuple[int, int]:
        """(low, high) of one partition."""
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=_TIMEOUT_S
        )
        return int(low), int(high)

    def at_time(self, partitions: list[int], epoch_ms: int) -> dict[int, int]:
        """Each partition's first offset written at or after ``epoch_ms`` (-1: none)."""
        wanted = [TopicPartition(self.topic, p, epoch_ms) for p in partitions]
        found = self._consumer.offsets_for_times(wanted, timeout=_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in found}


# (offsets, partitions) -> partition -> (first offset, end offset): which records to read
Bounds = Callable[[Offsets, list[int]], dict[int, tuple[int, int]]]


@contextmanager
def scan(
    kafka: KafkaSettings, topic: str, purpose: str, bounds: Bounds, partition: int | None = None
) -> Iterator[Iterator[Message]]:
    """The records of ``topic`` in the ``bounds`` (of ``partition``, or of every partition), read
    committed. BrokerError when the topic does not exist or Kafka fails the pass."""
    consumer = Consumer(
        {
            **base_config(kafka),
            "group.id": f"{kafka.group_id}.{purpose}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        try:
            meta = consumer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
            if meta is None or meta.error is not None:
                raise BrokerError(f"topic {topic} does not exist")
            partitions = sorted(p for p in meta.partitions if partition is None or p == partition)
            chosen = {
                p: (start, end)
                for p, (start, end) in bounds(Offsets(consumer, topic), partitions).items()
                if start < end
            }
            consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in chosen.items()])
        except KafkaException as exc:
            raise _failed(topic, exc) from None
        yield _records(consumer, topic, {p: end for p, (_, end) in chosen.items()})
    finally:
        consumer.close()


def _failed(topic: str, exc: KafkaException) -> BrokerError:
    return BrokerError(f"cannot read {topic}: {exc.args[0].str()}")


def _records(consumer: Consumer, topic: str, ends: dict[int, int]) -> Iterator[Message]:
    idle_since = time.monotonic()
    while ends and time.monotonic() - idle_since < IDLE_S:
        try:
            batch = consumer.consume(500, 0.5)
        except KafkaException as exc:
            raise _failed(topic, exc) from None
        for msg in batch:
            if msg.error():
                continue
            idle_since = time.monotonic()
            if (msg.offset() or 0) < ends.get(msg.partition() or 0, 0):
                yield msg
        # a position, not the last record's offset, says a partition is done: transaction
        # markers take offsets too
        try:
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
        except KafkaException as exc:
            raise _failed(topic, exc) from None
        for tp in positions:
            if tp.offset >= ends[tp.partition]:
                ends.pop(tp.partition)
