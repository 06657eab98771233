"""Pure offset bookkeeping: commit only the highest offset below which everything is finished."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["OffsetTracker", "TopicPartition"]

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class _Partition:
    pending: deque[int] = field(default_factory=deque)  # dispatched offsets, ascending
    done: set[int] = field(default_factory=set)
    next_commit: int | None = None  # first offset not yet known finished
    committed: int | None = None

    def advance(self) -> None:
        while self.pending and self.pending[0] in self.done:
            off = self.pending.popleft()
            self.done.discard(off)
            self.next_commit = off + 1


class OffsetTracker:
    """Tracks dispatched and finished offsets per partition.

    ``committable()`` returns, per partition, the offset to commit (Kafka semantics: the next one to
    read) such that every record before it is finished. It never passes an unfinished record.
    """

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}

    def track(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.setdefault(tp, _Partition())
        if part.pending and offset <= part.pending[-1]:
            raise ValueError(f"offset {offset} of {tp} dispatched out of order")
        if not part.pending and part.next_commit is None:
            part.next_commit = offset
        part.pending.append(offset)

    def complete(self, tp: TopicPartition, offset: int) -> bool:
        """Mark finished; False when the partition is no longer tracked (revoked meanwhile)."""
        part = self._parts.get(tp)
        if part is None:
            return False
        part.done.add(offset)
        part.advance()
        return True

    def committable(self) -> dict[TopicPartition, int]:
        """Partitions whose commit position moved since the last ``mark_committed``."""
        return {
            tp: p.next_commit
            for tp, p in self._parts.items()
            if p.next_commit is not None
            and p.next_commit != p.committed
            and (not p.pending or p.next_commit <= p.pending[0])
        }

    def mark_committed(self, positions: dict[TopicPartition, int]) -> None:
        for tp, off in positions.items():
            if tp in self._parts:
                self._parts[tp].committed = off

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        parts = self._parts.values() if tp is None else [self._parts[tp]] if tp in self._parts else []
        return sum(len(p.pending) for p in parts)

    def drop(self, tp: TopicPartition) -> None:
        self._parts.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._parts)
