"""Properties of the offset tracker: the commit position never passes an unfinished record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.offsets import OffsetTracker

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
        committed = tracker.committable().get(TP)
        if committed is None:
            continue
        position = committed.offset
        # everything before the position is finished ...
        assert all(o in done for o in offsets if o < position)
        # ... and it is as far as it can go: past every finished record before the first unfinished one
        unfinished = [o for o in offsets if o not in done]
        if unfinished:
            assert position <= unfinished[0]
            assert all(position > o for o in offsets if o < unfinished[0])
        else:
            assert position == offsets[-1] + 1
        tracker.mark_committed({TP: committed})


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
    committed = tracker.committable().get(TP)
    position = committed.offset if committed else offsets[0]
    # a new owner restores the commit and its metadata, then sees every record from the position on
    successor = OffsetTracker()
    successor.restore(TP, position, committed.metadata if committed else "")
    processed = [o for o in offsets if o >= position and successor.track(TP, o)]
    unfinished = set(offsets) - set(finished)
    assert set(processed) == unfinished  # nothing unfinished skipped, nothing finished redone


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


@given(schedules(), st.integers(min_value=20, max_value=200))
def test_a_map_too_big_for_the_metadata_is_cut_and_reported(
    schedule: tuple[list[int], list[int]], limit: int
) -> None:
    offsets, finished = schedule
    tracker = OffsetTracker(metadata_limit=limit)
    for off in offsets:
        tracker.track(TP, off)
    for off in finished:
        tracker.complete(TP, off)
    committed = tracker.committable().get(TP)
    if committed is None:
        return
    assert len(committed.metadata) <= limit
    successor = OffsetTracker()
    successor.restore(TP, committed.offset, committed.metadata)
    processed = {o for o in offsets if o >= committed.offset and successor.track(TP, o)}
    unfinished = set(offsets) - set(finished)
    assert unfinished <= processed  # never skips unfinished work
    cut = tracker.window_end(TP)
    redone = processed - unfinished
    assert not redone or (cut is not None and min(redone) > cut)  # only what lay beyond the cut


def test_metadata_round_trip_example() -> None:
    from consumer.core import offsetmap

    assert offsetmap.encode(100, {102, 103, 107}) == ("m1:AgIDAQ", None)
    assert offsetmap.decode(100, "m1:AgIDAQ") == {102, 103, 107}
    assert offsetmap.decode(100, "someone else's metadata") == set()
