"""Pure offset bookkeeping: commit only the highest offset below which everything is finished, with
the completions beyond it in the commit metadata (``offsetmap``) so a restart skips them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from consumer.core import offsetmap

__all__ = ["OffsetTracker", "Position", "TopicPartition"]

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Position:
    """What to commit for one partition: the next offset to read, and the completions beyond it."""

    offset: int
    metadata: str = ""


@dataclass(slots=True)
class _Partition:
    pending: deque[int] = field(default_factory=deque)  # dispatched offsets, ascending
    done: set[int] = field(default_factory=set)
    next_commit: int | None = None  # first offset not yet known finished
    committed: Position | None = None
    # finished by a previous owner beyond its commit: [start, end) intervals, ascending (the commit
    # metadata is outside input: as intervals its cost is its size, never the range it claims)
    restored: deque[offsetmap.Interval] = field(default_factory=deque)
    cut: int | None = None  # the metadata no longer covers completions after this offset

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

    def __init__(self, metadata_limit: int = offsetmap.MAX_METADATA_BYTES) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._limit = metadata_limit

    def restore(self, tp: TopicPartition, committed: int, metadata: str | None) -> int:
        """On assignment: remember what the previous owner finished beyond its commit; returns how
        many offsets that is."""
        part = self._parts.setdefault(tp, _Partition())
        part.restored = deque(offsetmap.decode_runs(committed, metadata))
        part.committed = Position(committed, metadata or "")
        return sum(end - start for start, end in part.restored)

    def track(self, tp: TopicPartition, offset: int) -> bool:
        """Record a dispatched offset; False when it was already finished (skip it)."""
        part = self._parts.setdefault(tp, _Partition())
        if part.pending and offset <= part.pending[-1]:
            raise ValueError(f"offset {offset} of {tp} dispatched out of order")
        if not part.pending and part.next_commit is None:
            part.next_commit = offset
        part.pending.append(offset)
        restored = part.restored
        while restored and restored[0][1] <= offset:
            restored.popleft()  # offsets not read again (compacted, transaction markers)
        if restored and restored[0][0] <= offset:
            restored[0] = (offset + 1, restored[0][1])
            if restored[0][0] >= restored[0][1]:
                restored.popleft()
            part.done.add(offset)
            part.advance()
            return False
        return True

    def complete(self, tp: TopicPartition, offset: int) -> bool:
        """Mark finished; False when the partition is no longer tracked (revoked meanwhile)."""
        part = self._parts.get(tp)
        if part is None:
            return False
        part.done.add(offset)
        part.advance()
        return True

    def committable(self) -> dict[TopicPartition, Position]:
        """Partitions whose position (offset or completions beyond it) changed since the last commit."""
        found: dict[TopicPartition, Position] = {}
        for tp, p in self._parts.items():
            if p.next_commit is None:
                continue
            metadata, p.cut = offsetmap.encode(p.next_commit, p.done, self._limit, p.restored)
            position = Position(p.next_commit, metadata)
            if position != p.committed:
                found[tp] = position
        return found

    def mark_committed(self, positions: dict[TopicPartition, Position]) -> None:
        for tp, position in positions.items():
            if tp in self._parts:
                self._parts[tp].committed = position

    def window_end(self, tp: TopicPartition) -> int | None:
        """The last offset whose completion the commit metadata can still record (None: no limit).
        Dispatching beyond it would risk redoing work after a restart: narrow the window there."""
        part = self._parts.get(tp)
        return None if part is None else part.cut

    def uncommitted(self) -> list[TopicPartition]:
        """Partitions with work in flight or finished beyond what was last committed."""
        return [
            tp
            for tp, p in self._parts.items()
            if p.pending
            or (p.next_commit is not None and (p.committed is None or p.committed.offset != p.next_commit))
        ]

    def oldest(self) -> dict[TopicPartition, int | None]:
        """Each partition's oldest unfinished offset (None when nothing is outstanding)."""
        return {tp: (p.pending[0] if p.pending else None) for tp, p in self._parts.items()}

    def position(self, tp: TopicPartition) -> int | None:
        """Where the group stands on ``tp``: the last committed offset, else (nothing committed yet)
        the first offset read here that is not finished, else None (nothing known)."""
        part = self._parts.get(tp)
        if part is None:
            return None
        return part.committed.offset if part.committed is not None else part.next_commit

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        parts = self._parts.values() if tp is None else [self._parts[tp]] if tp in self._parts else []
        return sum(len(p.pending) for p in parts)

    def drop(self, tp: TopicPartition) -> None:
        self._parts.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._parts)
