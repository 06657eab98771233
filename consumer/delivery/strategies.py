"""Delivery as a strategy: what happens to finished records at commit time and when partitions
go. ``AtLeastOnce`` commits the input offsets of acknowledged outputs through the consumer;
``ExactlyOnce`` writes outputs and offsets in one transaction per interval and, when a transaction
is lost, rewinds every partition to its committed offsets. The service calls the same five methods
whichever it runs; neither strategy knows the pipeline."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from consumer.config import Settings
from consumer.core.offsets import Position, TopicPartition
from consumer.delivery.progress import Progress
from consumer.errors import TransactionLost
from consumer.kafka.sink import Sink
from consumer.kafka.transactions import TransactionalSink
from consumer.telemetry import metrics

__all__ = [
    "AtLeastOnce",
    "Delivery",
    "ExactlyOnce",
    "KafkaSource",
    "commit_periodically",
    "default_transactional_id",
    "delivery_for",
]

log = logging.getLogger("consumer.delivery")
T = TypeVar("T")
Positions = dict[TopicPartition, Position]


class KafkaSource(Protocol):
    """What a strategy and a rebalance ask of the consumer (``kafka.Source``; an in-memory fake in
    unit tests)."""

    group_metadata: Any

    def commit(self, positions: Mapping[TopicPartition, Position], *, asynchronous: bool = False) -> bool: ...

    def committed(self, parts: list[TopicPartition], timeout: float = 10.0) -> Positions: ...

    def seek(self, positions: Mapping[TopicPartition, int | None]) -> None: ...

    def resume(self, parts: list[TopicPartition]) -> None: ...

    async def in_thread(self, call: Callable[[], T]) -> T: ...


class Delivery(Protocol):
    @property
    def sink(self) -> Sink: ...

    @property
    def interval_s(self) -> float: ...

    @property
    def rewind_needed(self) -> bool:
        """A lost transaction must be rewound before anything more is read."""

    async def start(self) -> None: ...

    async def commit(self, *, final: bool = False) -> None:
        """Commit what is finished (``final``: at shutdown, synchronously)."""

    async def revoke(self, parts: list[TopicPartition], within_s: float) -> Positions:
        """Partitions are being revoked (their running work drained): settle their outputs; returns
        the positions the rebalance callback commits for them (none when already committed)."""

    async def lose(self, parts: list[TopicPartition]) -> None:
        """Partitions were lost (another member owns them): nothing of theirs may be committed."""

    async def rewind(self) -> None:
        """After a lost transaction: every assigned partition back to its committed offset."""

    async def close(self) -> None: ...


def _narrow(progress: Progress) -> None:
    """After ``committable()``: dispatch no further than the commit metadata can record."""
    for tp in progress.tracker.partitions():
        progress.scheduler.narrow(tp, progress.tracker.window_end(tp))


class AtLeastOnce:
    """Outputs through an idempotent producer; offsets committed by the consumer once acknowledged.
    A crash redoes at most the work since the last commit."""

    rewind_needed = False

    def __init__(self, progress: Progress, source: KafkaSource, sink: Sink, interval_s: float) -> None:
        self._progress, self._source, self.sink, self.interval_s = progress, source, sink, interval_s

    async def start(self) -> None:
        self.sink.start()

    async def commit(self, *, final: bool = False) -> None:
        positions = self._progress.tracker.committable()
        _narrow(self._progress)
        if not positions:
            return
        source = self._source
        if await source.in_thread(lambda: source.commit(positions, asynchronous=not final)):
            self._progress.committed(positions)

    async def revoke(self, parts: list[TopicPartition], within_s: float) -> Positions:
        await self.sink.flush(within_s)  # their acknowledgements complete their offsets
        mine = set(parts)
        return {tp: pos for tp, pos in self._progress.tracker.committable().items() if tp in mine}

    async def lose(self, parts: list[TopicPartition]) -> None:
        return None

    async def rewind(self) -> None:
        return None

    async def close(self) -> None:
        await self.sink.close()


class ExactlyOnce:
    """Outputs and input offsets in one transaction per interval. A lost transaction (aborted, or
    its producer fenced and rebuilt) drops every result still running (new epochs) and rewinds the
    consumer to the committed offsets, so its records are redone once."""

    def __init__(
        self, progress: Progress, source: KafkaSource, sink: TransactionalSink, interval_s: float
    ) -> None:
        self._progress, self._source, self.sink, self.interval_s = progress, source, sink, interval_s
        self._lock = asyncio.Lock()
        self.rewind_needed = False

    async def start(self) -> None:
        await self.sink.init()
        self.sink.start()

    async def commit(self, *, final: bool = False) -> None:
        positions: Mapping[TopicPartition, Position] = {}
        async with self._lock:
            if not self.rewind_needed:
                try:
                    positions = await self.sink.commit(
                        self._progress.tracker.committable, lambda: self._source.group_metadata
                    )
                except TransactionLost as exc:
                    self._lose_all(str(exc))
        if positions:
            self._progress.committed(dict(positions))
        _narrow(self._progress)

    async def revoke(self, parts: list[TopicPartition], within_s: float) -> Positions:
        await self.commit(final=True)  # their outputs and offsets, in one transaction
        return {}

    async def lose(self, parts: list[TopicPartition]) -> None:
        self.sink.doom("partitions lost")  # a commit under way cannot succeed: it gives up now
        async with self._lock:
            await self.sink.abort("partitions lost")
        self._lose_all("partitions lost")

    def _lose_all(self, why: str) -> None:
        log.warning("transaction lost; rewinding to the committed offsets: %s", why)
        progress = self._progress
        progress.epochs.assign(progress.epochs)
        for tp in progress.epochs:
            progress.scheduler.drop(tp)
            progress.tracker.drop(tp)
        self.rewind_needed = True

    async def rewind(self) -> None:
        self.rewind_needed = False
        progress, source = self._progress, self._source
        parts = list(progress.epochs)

        def seek() -> Positions:
            committed = source.committed(parts)
            source.seek({tp: committed[tp].offset if tp in committed else None for tp in parts})
            source.resume(parts)
            return committed

        committed = await source.in_thread(seek)
        for tp, position in committed.items():
            if tp in progress.epochs:
                progress.tracker.restore(tp, position.offset, position.metadata)
        metrics.PAUSED.set(progress.scheduler.paused)
        log.info(
            "rewound", extra={"positions": {f"{t}[{p}]": pos.offset for (t, p), pos in committed.items()}}
        )

    async def close(self) -> None:
        await self.sink.close()


async def commit_periodically(
    delivery: Delivery, after_each: Callable[[], None], on_error: Callable[[BaseException], None]
) -> None:
    """Commits run on their own clock (dispatch may be waiting for a free slot meanwhile). A
    committer that died quietly would stall the group's progress: on an error, ``on_error`` (the
    service stops loudly)."""
    while True:
        await asyncio.sleep(delivery.interval_s)
        try:
            await delivery.commit()
        except Exception as exc:
            log.error("committing failed; stopping", exc_info=True)
            on_error(exc)
            return
        after_each()


def default_transactional_id(group_id: str, worker: int) -> str:
    """Unique per process on a host (pid), stable per pod (a container's pid does not change)."""
    return f"{group_id}-{socket.gethostname()}-w{worker}-p{os.getpid()}"


def delivery_for(
    settings: Settings, progress: Progress, source: KafkaSource, worker: int = 0
) -> AtLeastOnce | ExactlyOnce:
    k, p = settings.kafka, settings.processing
    if p.delivery == "exactly_once":
        tid = k.transactional_id or default_transactional_id(k.group_id, worker)
        return ExactlyOnce(progress, source, TransactionalSink(k, tid), p.transaction_interval_ms / 1000)
    return AtLeastOnce(progress, source, Sink(k), k.commit_interval_ms / 1000)
