"""Pure dispatch: which received records may start now.

- Order: KEY (default) runs records of one key in offset order and different keys in parallel,
  even inside one partition; PARTITION runs one record per partition at a time; UNORDERED runs
  anything. A null key never waits for another record.
- Bounds: in flight at most ``max_records`` records and ``max_bytes`` bytes (one record always
  may run, however large). Received-but-waiting records are bounded per partition by pausing it at
  ``pause_at`` waiting records and resuming at ``resume_at`` (hysteresis, so a partition does not
  flap), and overall by pausing everything past ``max_buffered_bytes``.
- Fairness: partitions take turns.

No clocks, no awaits, no Kafka: the service feeds it records and completions and applies the
pause/resume decisions to the consumer.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Mode", "Scheduler", "Work"]

TopicPartition = tuple[str, int]


class Mode(enum.StrEnum):
    KEY = "KEY"
    PARTITION = "PARTITION"
    UNORDERED = "UNORDERED"


_unique = itertools.count()


P = TypeVar("P")


@dataclass(eq=False, slots=True)
class Work(Generic[P]):
    """One received record; ``payload`` is the caller's (what it needs to run the record)."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    size: int
    payload: P = None  # type: ignore[assignment]
    lane: Hashable = None  # what must not run twice at once (set by the scheduler)


@dataclass(slots=True)
class _Partition:
    runnable: deque[Hashable] = field(default_factory=deque)  # lanes with a record ready to start
    waiting: dict[Hashable, deque[Work[Any]]] = field(default_factory=dict)  # per lane, offset order
    queued: int = 0
    queued_bytes: int = 0
    paused: bool = False
    limit: int | None = None  # no record beyond this offset may start (None: no limit)


class Scheduler:
    def __init__(
        self,
        mode: Mode = Mode.KEY,
        *,
        max_records: int = 256,
        max_bytes: int = 64 << 20,
        pause_at: int = 1000,
        resume_at: int | None = None,
        max_buffered_bytes: int = 256 << 20,
    ) -> None:
        if max_records < 1 or pause_at < 1:
            raise ValueError("max_records and pause_at must be at least 1")
        self.mode = mode
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.pause_at = pause_at
        self.resume_at = pause_at // 2 if resume_at is None else resume_at
        if not 0 <= self.resume_at < pause_at:
            raise ValueError("resume_at must be below pause_at")
        self.max_buffered_bytes = max_buffered_bytes
        self._parts: dict[TopicPartition, _Partition] = {}
        self._busy: set[Hashable] = set()  # lanes with a record in flight
        self._turn: deque[TopicPartition] = deque()
        self.in_flight = 0
        self.in_flight_bytes = 0
        self.buffered_bytes = 0
        self._all_paused = False

    # --- intake ---------------------------------------------------------------------------------
    def _lane(self, work: Work[Any]) -> Hashable:
        if self.mode is Mode.PARTITION:
            return work.tp
        if self.mode is Mode.UNORDERED or work.key is None:
            return ("unique", next(_unique))
        return (work.tp, work.key)

    def offer(self, work: Work[Any]) -> None:
        part = self._parts.get(work.tp)
        if part is None:
            part = self._parts[work.tp] = _Partition()
            self._turn.append(work.tp)
        work.lane = self._lane(work)
        lane_queue = part.waiting.get(work.lane)
        if lane_queue is None:
            part.waiting[work.lane] = deque([work])
            if work.lane not in self._busy:
                part.runnable.append(work.lane)
        else:
            lane_queue.append(work)
        part.queued += 1
        part.queued_bytes += work.size
        self.buffered_bytes += work.size

    # --- dispatch -------------------------------------------------------------------------------
    def _fits(self, work: Work[Any]) -> bool:
        if self.in_flight >= self.max_records:
            return False
        return self.in_flight == 0 or self.in_flight_bytes + work.size <= self.max_bytes

    def ready(self) -> list[Work[Any]]:
        """Records to start now, taking partitions in turn."""
        started: list[Work[Any]] = []
        idle_rounds = 0
        while self._turn and idle_rounds < len(self._turn):
            tp = self._turn[0]
            self._turn.rotate(-1)
            part = self._parts[tp]
            if not part.runnable:
                idle_rounds += 1
                continue
            lane = part.runnable[0]
            work = part.waiting[lane][0]
            if part.limit is not None and work.offset > part.limit:
                idle_rounds += 1  # beyond the narrowed window: waits until the commit catches up
                continue
            if not self._fits(work):
                break
            part.runnable.popleft()
            self._start(part, lane)
            started.append(work)
            idle_rounds = 0
        return started

    def _start(self, part: _Partition, lane: Hashable) -> None:
        queue = part.waiting[lane]
        work = queue.popleft()
        if not queue:
            del part.waiting[lane]
        self._busy.add(lane)
        part.queued -= 1
        part.queued_bytes -= work.size
        self.buffered_bytes -= work.size
        self.in_flight += 1
        self.in_flight_bytes += work.size

    def done(self, work: Work[Any]) -> None:
        """A started record finished (or was abandoned); its lane may run its next record."""
        self.in_flight -= 1
        self.in_flight_bytes -= work.size
        self._busy.discard(work.lane)
        part = self._parts.get(work.tp)
        if part is not None and work.lane in part.waiting:
            part.runnable.append(work.lane)

    def narrow(self, tp: TopicPartition, last_offset: int | None) -> None:
        """Start no record of ``tp`` beyond ``last_offset`` (None lifts the limit): the commit
        metadata cannot record completions past it, so work there would be redone after a restart."""
        part = self._parts.get(tp)
        if part is not None:
            part.limit = last_offset

    # --- backpressure ---------------------------------------------------------------------------
    def to_pause(self) -> list[TopicPartition]:
        over_budget = self.buffered_bytes > self.max_buffered_bytes
        found = []
        for tp, part in self._parts.items():
            if not part.paused and (part.queued >= self.pause_at or over_budget):
                part.paused = True
                found.append(tp)
        self._all_paused = self._all_paused or over_budget
        return found

    def to_resume(self) -> list[TopicPartition]:
        if self._all_paused and self.buffered_bytes > self.max_buffered_bytes // 2:
            return []
        self._all_paused = False
        found = []
        for tp, part in self._parts.items():
            if part.paused and part.queued <= self.resume_at:
                part.paused = False
                found.append(tp)
        return found

    @property
    def paused(self) -> int:
        return sum(1 for p in self._parts.values() if p.paused)

    @property
    def queued(self) -> int:
        return sum(p.queued for p in self._parts.values())

    def queued_by_partition(self) -> dict[TopicPartition, int]:
        """Records received and waiting to start, per partition."""
        return {tp: p.queued for tp, p in self._parts.items()}

    # --- rebalance ------------------------------------------------------------------------------
    def drop(self, tp: TopicPartition) -> list[Work[Any]]:
        """Forget a revoked partition: its waiting records are returned (never started)."""
        part = self._parts.pop(tp, None)
        if part is None:
            return []
        self._turn.remove(tp)
        dropped = [w for queue in part.waiting.values() for w in queue]
        self.buffered_bytes -= part.queued_bytes
        return dropped

    def waiting(self) -> Iterator[Work[Any]]:
        for part in self._parts.values():
            for queue in part.waiting.values():
                yield from queue
