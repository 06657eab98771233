"""The bookkeeping one consumer process shares between intake, delivery, rebalances and the watch:
which offsets are finished (``tracker``), the scheduler's slots, the assignment epochs, the tasks
running, and the loop's state. One object, handed to each part instead of the service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from consumer.core.epochs import Epochs
from consumer.core.offsets import OffsetTracker, Position, TopicPartition
from consumer.core.scheduler import Scheduler, Work
from consumer.core.stalls import CommitWatch
from consumer.delivery.outputs import Received

__all__ = ["Progress"]

log = logging.getLogger("consumer.service")


class Progress:
    def __init__(self, scheduler: Scheduler, commits: CommitWatch) -> None:
        self.scheduler = scheduler
        self.commits = commits
        self.tracker = OffsetTracker()
        self.epochs = Epochs()
        self.running: dict[asyncio.Task[None], Work[Received]] = {}
        self.fatal: BaseException | None = None
        self.stopping = False  # intake stopped: waiting records are left for redelivery
        self.intake_held = False  # a provider's circuit is open or the registry is away
        self.last_poll = time.monotonic()
        self._on_free: Callable[[], None] = _nothing

    @property
    def assigned(self) -> int:
        return len(self.epochs)

    def on_free(self, callback: Callable[[], None]) -> None:
        """``callback`` runs whenever a slot frees (the intake dispatches what waits)."""
        self._on_free = callback

    def release(self, work: Work[Received]) -> None:
        self.scheduler.done(work)
        self._on_free()

    def current(self, work: Work[Received]) -> bool:
        """False for a result of an earlier assignment (revoked, lost or rewound since)."""
        return self.epochs.of(work.tp) == work.payload.epoch

    def complete(self, work: Work[Received]) -> None:
        if self.current(work):
            self.tracker.complete(work.tp, work.offset)

    def finished(self, work: Work[Received]) -> None:
        """Nothing to produce for this record: its offset is done now."""
        self.complete(work)
        self.release(work)

    def fail(self, exc: BaseException) -> None:
        """The service stops on the first fatal error and raises it."""
        self.fatal = self.fatal or exc

    def spawn(self, work: Work[Received], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.running[task] = work
        task.add_done_callback(self.running.pop)

    def committed(self, positions: dict[TopicPartition, Position]) -> None:
        if not positions:
            return
        self.tracker.mark_committed(positions)
        self.commits.committed(list(positions))
        offsets = {f"{t}[{p}]": pos.offset for (t, p), pos in positions.items()}
        with_map = sum(1 for pos in positions.values() if pos.metadata)
        log.debug("committed", extra={"positions": offsets, "with_map": with_map})


def _nothing() -> None:
    return None
