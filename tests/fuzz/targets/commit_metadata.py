"""Commit metadata, what Kafka hands back with a committed offset on assignment (any client that
can commit for the group writes it): ``OffsetTracker.restore``, then the commit it leads to. The
first input byte picks the committed offset, the rest (UTF-8, as the client hands it over) is the
metadata. Nothing may escape: foreign metadata is ignored."""

from __future__ import annotations

from consumer.core.offsets import OffsetTracker

__all__ = ["BASES", "test_one_input"]

BASES = (0, 1, 100, 4095, 1 << 31, (1 << 62) + 7)
_TP = ("uploads", 0)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    base = BASES[data[0] % len(BASES)]
    metadata = data[1:].decode("utf-8", "replace")
    tracker = OffsetTracker()
    tracker.restore(_TP, base, metadata)
    for offset in range(base, base + 4):  # the next records come in: skipped if restored as done
        tracker.track(_TP, offset)
    tracker.committable()
