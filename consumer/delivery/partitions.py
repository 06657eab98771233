"""Partitions coming and going (cooperative-sticky): assignment restores what a previous owner
finished beyond its commit; revocation stops dispatch, drains what runs for those partitions
(bounded) and settles them through the delivery strategy; loss drops everything and commits
nothing. librdkafka calls these on the Kafka thread, inside ``consume``; the state they change
lives on the event loop, so each change runs there while the Kafka thread waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from consumer.core.offsets import Position, TopicPartition
from consumer.delivery.progress import Progress
from consumer.delivery.strategies import Delivery, KafkaSource
from consumer.errors import BrokerError
from consumer.telemetry import metrics

__all__ = ["Partitions"]

log = logging.getLogger("consumer.partitions")
T = TypeVar("T")
Positions = dict[TopicPartition, Position]


class Partitions:
    """What ``kafka.Source`` tells of rebalances (its ``Rebalance`` listener)."""

    def __init__(
        self,
        progress: Progress,
        source: KafkaSource,
        delivery: Delivery,
        loop: asyncio.AbstractEventLoop,
        revoke_drain_s: float,
    ) -> None:
        self._progress, self._source, self._delivery = progress, source, delivery
        self._loop = loop
        self._drain_s = revoke_drain_s

    def on_assign(self, parts: list[TopicPartition]) -> None:
        try:
            committed = self._source.committed(parts)
        except BrokerError as exc:  # the map is an optimisation: without it finished work is redone
            log.warning("%s", exc)
            committed = {}
        self._on_loop(self._assigned(parts, committed))

    def on_revoke(self, parts: list[TopicPartition]) -> None:
        """Cooperative revocation: drain what runs for these partitions (bounded), commit, let go."""
        positions = self._on_loop(self._release(parts, self._drain_s, commit=True))
        if positions:
            self._source.commit(positions)
        self._source.resume(parts)  # the scheduler forgot their pause: the consumer must too

    def on_lost(self, parts: list[TopicPartition]) -> None:
        """Lost (another member owns them already): drop everything, commit nothing. In exactly-once
        mode the open transaction may hold their outputs: it is aborted and the rest rewound."""
        self._on_loop(self._release(parts, 0.0, commit=False))
        self._source.resume(parts)

    async def _assigned(self, parts: list[TopicPartition], committed: Positions) -> None:
        s = self._progress
        s.epochs.assign(parts)
        for tp, position in committed.items():
            skipped = s.tracker.restore(tp, position.offset, position.metadata)
            if skipped:
                log.info(
                    "restored finished offsets beyond the commit",
                    extra={
                        "topic": tp[0],
                        "partition": tp[1],
                        "offset": position.offset,
                        "finished": skipped,
                    },
                )
        metrics.child(metrics.REBALANCES, "assigned").inc()
        metrics.ASSIGNED.set(len(s.epochs))

    async def _release(self, parts: list[TopicPartition], drain_s: float, *, commit: bool) -> Positions:
        s = self._progress
        mine = set(parts)
        for tp in parts:
            s.scheduler.drop(tp)  # stop dispatch: waiting records are redelivered to the next owner
        positions: Positions = {}
        if commit:
            deadline = self._loop.time() + drain_s
            running = [task for task, work in s.running.items() if work.tp in mine]
            if running and drain_s > 0:
                await asyncio.wait(running, timeout=drain_s)
            positions = await self._delivery.revoke(parts, max(0.0, deadline - self._loop.time()))
        else:
            await self._delivery.lose(parts)
        for tp in parts:
            s.tracker.drop(tp)
            s.epochs.release(tp)  # results still in flight for it are discarded
        s.commits.committed(parts)
        metrics.child(metrics.REBALANCES, "revoked" if commit else "lost").inc()
        metrics.ASSIGNED.set(len(s.epochs))
        return positions

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
