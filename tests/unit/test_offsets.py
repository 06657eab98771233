"""Properties of the offset tracker: the commit position never passes an unfinished record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.offsets import OffsetTracker

TP = ("uploads", 0)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Dispatched offsets (ascending, with gaps as compaction leaves) and a completion order."""
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60))
    offsets, off = [], draw(st.integers(min_value=0, max_value=1000))
    for g in gaps:
        offsets.append(off)
        off += g
    finished = draw(st.permutations(offsets))
    cut = draw(st.integers(min_value=0, max_value=len(offsets)))
    return offsets, list(finished[:cut])


@given(schedules())
def test_commit_position_never_passes_an_unfinished_record(schedule: tuple[list[int], list[int]]) -> None:
    offsets, finished = schedule
    tracker = OffsetTracker()
    for off in offsets:
        tracker.track(TP, off)
    done: set[int] = set()
    for off in finished:
        tracker.complete(TP, off)
        done.add(off)
        position = tracker.committable().get(TP)
        if position is None:
            continue
        # everything before the position is finished ...
        assert all(o in done for o in offsets if o < position)
        # ... and it is as far as it can go: past every finished record before the first unfinished one
        unfinished = [o for o in offsets if o not in done]
        if unfinished:
            assert position <= unfinished[0]
            assert all(position > o for o in offsets if o < unfinished[0])
        else:
            assert position == offsets[-1] + 1
        tracker.mark_committed({TP: position})


@given(schedules())
def test_restart_from_the_commit_redoes_only_unfinished_or_later_records(
    schedule: tuple[list[int], list[int]],
) -> None:
    offsets, finished = schedule
    tracker = OffsetTracker()
    for off in offsets:
        tracker.track(TP, off)
    for off in finished:
        tracker.complete(TP, off)
    position = tracker.committable().get(TP, offsets[0])
    redone = [o for o in offsets if o >= position]
    unfinished = set(offsets) - set(finished)
    assert unfinished <= set(redone)  # nothing unfinished is skipped
    # redone finished records are only those finished after the first gap (bounded by the in-flight window)
    assert all(o > min(unfinished) for o in redone if o in set(finished)) if unfinished else redone == []


def test_revoked_partition_ignores_late_completions() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 5)
    tracker.drop(TP)
    assert tracker.complete(TP, 5) is False
    assert tracker.committable() == {}


def test_out_of_order_dispatch_is_refused() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 5)
    try:
        tracker.track(TP, 5)
    except ValueError as exc:
        assert "out of order" in str(exc)
    else:
        raise AssertionError("duplicate dispatch accepted")
