"""Stall detection (pure): a partition is stalled when its oldest unfinished record has stayed the
same for longer than the deadline. Fed periodically with each partition's oldest offset."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CommitWatch", "StallDetector", "positions_behind"]

TopicPartition = tuple[str, int]


class StallDetector:
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._since: dict[TopicPartition, tuple[int, float]] = {}  # oldest offset, first seen
        self.stalled: set[TopicPartition] = set()

    def observe(self, oldest: Mapping[TopicPartition, int | None], now: float) -> list[TopicPartition]:
        """Record each partition's oldest unfinished offset (None: nothing in flight); returns the
        partitions that became stalled with this observation. Partitions absent are forgotten."""
        for tp in set(self._since) - set(oldest):
            self._since.pop(tp)
            self.stalled.discard(tp)
        newly: list[TopicPartition] = []
        for tp, offset in oldest.items():
            if offset is None:
                self._since.pop(tp, None)
                self.stalled.discard(tp)
                continue
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset:
                self._since[tp] = (offset, now)
                self.stalled.discard(tp)
            elif now - seen[1] >= self.after_s and tp not in self.stalled:
                self.stalled.add(tp)
                newly.append(tp)
        return newly

    def age(self, tp: TopicPartition, now: float) -> float:
        seen = self._since.get(tp)
        return 0.0 if seen is None else now - seen[1]


class CommitWatch:
    """A partition that has had work outstanding without any commit of it for ``after_s`` cannot
    commit (e.g. exactly-once transactions aborting over and over): readiness fails for it.
    Fed with the partitions that have uncommitted work, and told of every successful commit. A
    moment without work (a rewind dropped it) does not restart the clock; ``after_s`` without any
    does: nothing is left to commit (seen on the cluster: after a lost transaction's rewind, a
    partition whose records had all been committed got no further commit and stayed stuck for good)."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._since: dict[TopicPartition, float] = {}
        self._idle_since: dict[TopicPartition, float] = {}
        self.stuck: set[TopicPartition] = set()

    def observe(self, uncommitted: list[TopicPartition], now: float) -> list[TopicPartition]:
        """Returns the partitions that became stuck with this observation."""
        outstanding = set(uncommitted)
        for tp in uncommitted:
            self._since.setdefault(tp, now)
            self._idle_since.pop(tp, None)
        for tp in [tp for tp in self._since if tp not in outstanding]:
            idle = self._idle_since.setdefault(tp, now)
            if now - idle >= self.after_s:
                self.committed([tp])
        newly = [
            tp for tp, since in self._since.items() if now - since >= self.after_s and tp not in self.stuck
        ]
        self.stuck.update(newly)
        return newly

    def committed(self, parts: list[TopicPartition]) -> None:
        """A commit carried these partitions (or they were let go): their clocks restart."""
        for tp in parts:
            self._since.pop(tp, None)
            self._idle_since.pop(tp, None)
            self.stuck.discard(tp)


def positions_behind(
    lags: Mapping[TopicPartition, int],
    positions: Mapping[TopicPartition, int | None],
    starts: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int | None]:
    """For a ``StallDetector``: each partition's position (else its log start) while records wait
    on it (lag above 0), None when none do. A position that stays put while records wait is a member
    that is not moving: one that takes no records (a member that still believes it owns partitions
    its group gave another after a coordinator failed over) as much as one whose records hang."""
    found: dict[TopicPartition, int | None] = {}
    for tp, waiting in lags.items():
        position = positions.get(tp)
        found[tp] = (position if position is not None else starts.get(tp)) if waiting > 0 else None
    return found
