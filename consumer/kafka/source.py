"""The input side: a lazily created consumer with manual, tracked commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from consumer.core.offsets import Position
from consumer.errors import BrokerError
from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["Rebalance", "Source"]

log = logging.getLogger("consumer.kafka.source")
T = TypeVar("T")


class Rebalance(Protocol):
    """Told of partitions assigned, revoked or lost (on librdkafka's thread, inside a poll)."""

    def on_assign(self, parts: list[tuple[str, int]]) -> None: ...

    def on_revoke(self, parts: list[tuple[str, int]]) -> None: ...

    def on_lost(self, parts: list[tuple[str, int]]) -> None: ...


class Source:
    """Wraps one ``confluent_kafka.Consumer``. Every method must be called from one thread: the
    service calls them through ``in_thread``, the consumer's own thread."""

    def __init__(
        self, settings: KafkaSettings, topics: list[str] | None = None, *, prefetch_bytes: int | None = None
    ) -> None:
        """``prefetch_bytes``: the most librdkafka may fetch ahead of us (its queue is memory outside
        our own byte bounds; its default is 64 MiB): ``queued.max.messages.kbytes``, at least 2 MiB
        (a fetch must hold one whole record); ``kafka.client_config`` still wins."""
        self._prefetch_kbytes = (
            None if prefetch_bytes is None else max(2048, min(65536, prefetch_bytes // 1024))
        )
        self._settings = settings
        self._topics = topics or [settings.input_topic]
        self._consumer: Consumer | None = None
        self._rebalance: Rebalance | None = None
        self._metadata_stale = True
        self.group_metadata: Any = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-source")

    def listen(self, rebalance: Rebalance) -> None:
        """Who hears of rebalances; set before the first ``consume``."""
        self._rebalance = rebalance

    async def in_thread(self, call: Callable[[], T]) -> T:
        """Runs ``call`` on the consumer's one thread (confluent-kafka's consumer is not thread-safe)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            config: dict[str, Any] = {
                **base_config(self._settings),
                "group.id": self._settings.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.partition.eof": False,
            }
            if self._prefetch_kbytes is not None:
                config["queued.max.messages.kbytes"] = self._prefetch_kbytes
            config.update(self._settings.client_config)
            self._consumer = Consumer(config)
            self._consumer.subscribe(
                self._topics,
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._lost,
            )
        return self._consumer

    def _assigned(self, _: Consumer, parts: list[TopicPartition]) -> None:
        self._metadata_stale = True
        log.info("partitions assigned", extra={"partitions": _names(parts)})
        if self._rebalance is not None:
            self._rebalance.on_assign([(p.topic, p.partition) for p in parts])

    def _revoked(self, _: Consumer, parts: list[TopicPartition]) -> None:
        self._metadata_stale = True
        log.info("partitions revoked", extra={"partitions": _names(parts)})
        if self._rebalance is not None:
            self._rebalance.on_revoke([(p.topic, p.partition) for p in parts])

    def _lost(self, _: Consumer, parts: list[TopicPartition]) -> None:
        self._metadata_stale = True
        log.warning("partitions lost", extra={"partitions": _names(parts)})
        if self._rebalance is not None:
            self._rebalance.on_lost([(p.topic, p.partition) for p in parts])

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        """Up to ``max_records``: waits at most ``timeout`` for the first, then takes what is already
        fetched without waiting. (One batch consume returns only when the batch is full or the
        timeout has passed: under a steady load below capacity, every record waited for it.)"""
        consumer = self.consumer
        messages = consumer.consume(num_messages=1, timeout=timeout)
        if messages and max_records > 1:
            messages += consumer.consume(num_messages=max_records - 1, timeout=0)
        if self._metadata_stale:
            # Read here, never inside a rebalance callback: there librdkafka's group thread is
            # waiting for the callback, and the call would wait for it (a deadlock). A revocation
            # commits with the generation read before it, which is the one it belongs to.
            self._metadata_stale = False
            self.group_metadata = self.consumer.consumer_group_metadata()
        return messages

    def commit(self, positions: Mapping[tuple[str, int], Position], *, asynchronous: bool = False) -> bool:
        if not positions or self._consumer is None:
            return True
        offsets = [
            TopicPartition(t, p, pos.offset, metadata=pos.metadata) for (t, p), pos in positions.items()
        ]
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. a rebalance in progress: the positions are committed again on the next round
            log.warning("commit failed: %s", exc.args[0].str())
            return False
        return True

    def seek(self, positions: Mapping[tuple[str, int], int | None]) -> None:
        """Move the fetch position of assigned partitions (None: the beginning of the log)."""
        for (t, p), offset in positions.items():
            self.consumer.seek(TopicPartition(t, p, OFFSET_BEGINNING if offset is None else offset))

    def pause(self, parts: list[tuple[str, int]]) -> None:
        if parts and self._consumer is not None:
            self._consumer.pause([TopicPartition(t, p) for t, p in parts])

    def resume(self, parts: list[tuple[str, int]]) -> None:
        if parts and self._consumer is not None:
            self._consumer.resume([TopicPartition(t, p) for t, p in parts])

    def committed(
        self, parts: list[tuple[str, int]], timeout: float = 10.0
    ) -> dict[tuple[str, int], Position]:
        """The group's committed positions (with metadata) for ``parts``; absent when none.
        ``BrokerError`` when the broker does not answer."""
        if not parts:
            return {}
        try:
            found = self.consumer.committed([TopicPartition(t, p) for t, p in parts], timeout=timeout)
        except KafkaException as exc:
            raise BrokerError(f"cannot read committed positions: {exc.args[0].str()}") from None
        return {
            (tp.topic, tp.partition): Position(tp.offset, tp.metadata or "")
            for tp in found
            if tp.offset >= 0 and tp.error is None
        }

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def shutdown(self) -> None:
        """After ``close`` (through ``in_thread``): the consumer's thread ends."""
        self._thread.shutdown(wait=True)


def _names(parts: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in parts]
