"""Assignment epochs (pure): every (re)assignment or rewind of a partition gets an epoch never used
before, so a result started under an earlier one is recognised as stale and dropped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Epochs"]

TopicPartition = tuple[str, int]


class Epochs:
    def __init__(self) -> None:
        self._current: dict[TopicPartition, int] = {}
        self._last = 0

    def assign(self, parts: Iterable[TopicPartition]) -> None:
        """Give ``parts`` fresh epochs (on assignment, or on a rewind of everything assigned)."""
        for tp in parts:
            self._last += 1
            self._current[tp] = self._last

    def release(self, tp: TopicPartition) -> None:
        self._current.pop(tp, None)

    def of(self, tp: TopicPartition) -> int | None:
        return self._current.get(tp)

    def __contains__(self, tp: object) -> bool:
        return tp in self._current

    def __iter__(self) -> Iterator[TopicPartition]:
        return iter(list(self._current))

    def __len__(self) -> int:
        return len(self._current)
