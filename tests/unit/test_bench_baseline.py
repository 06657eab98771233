"""The benchmark baseline's offset bookkeeping: what it commits never passes a record whose verdict
is not acknowledged, and reaches the end once every one is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.baseline import Acknowledged

TP = ("bench-uploads", 3)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Consumed offsets (ascending, with the gaps compaction or transaction markers leave) and the
    order some of them are acknowledged in."""
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60))
    offsets, off = [], draw(st.integers(min_value=0, max_value=1000))
    for g in gaps:
        offsets.append(off)
        off += g
    acked = draw(st.permutations(offsets))
    cut = draw(st.integers(min_value=0, max_value=len(offsets)))
    return offsets, list(acked[:cut])


@given(schedules())
def test_the_commit_never_passes_an_unacknowledged_record(schedule: tuple[list[int], list[int]]) -> None:
    offsets, acked = schedule
    acks = Acknowledged()
    for off in offsets:
        acks.consumed(TP, off)
    for off in acked:
        acks.acknowledged(TP, off)
        position = acks.committable()[TP]
        done = set(acked[: acked.index(off) + 1])
        assert all(o in done for o in offsets if o < position)  # everything before it has a verdict
        assert position == min((o for o in offsets if o not in done), default=offsets[-1] + 1)


def test_partitions_are_apart_and_a_revoked_one_is_forgotten() -> None:
    acks, other = Acknowledged(), ("bench-uploads", 4)
    for off in (10, 11, 12):
        acks.consumed(TP, off)
    acks.consumed(other, 7)
    acks.acknowledged(TP, 11)
    acks.acknowledged(other, 7)
    assert acks.committable() == {TP: 10, other: 8}
    assert acks.committable([other]) == {other: 8}
    acks.forget([TP])
    acks.acknowledged(TP, 10)  # a late acknowledgement of a revoked partition's record
    assert acks.committable() == {other: 8}
