"""Stall detection: the oldest unfinished record of a partition unchanged past the deadline."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.stalls import StallDetector

TP = ("uploads", 0)


def test_reports_once_when_the_oldest_record_stays_past_the_deadline() -> None:
    d = StallDetector(10)
    assert d.observe({TP: 5}, 0) == []
    assert d.observe({TP: 5}, 9.9) == []
    assert d.observe({TP: 5}, 10) == [TP]
    assert d.observe({TP: 5}, 11) == []  # reported once
    assert d.stalled == {TP}


def test_progress_or_an_empty_partition_clears_it() -> None:
    d = StallDetector(1)
    d.observe({TP: 5}, 0)
    d.observe({TP: 5}, 2)
    assert d.observe({TP: 6}, 2.5) == [] and d.stalled == set()
    d.observe({TP: 6}, 4)
    d.observe({TP: None}, 4.1)
    assert d.stalled == set()


def test_revoked_partitions_are_forgotten() -> None:
    d = StallDetector(1)
    d.observe({TP: 5}, 0)
    d.observe({TP: 5}, 2)
    d.observe({}, 3)
    assert d.stalled == set() and d.age(TP, 3) == 0.0


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 5)), max_size=40))
def test_stalled_only_if_unchanged_for_the_deadline(steps: list[tuple[int, float]]) -> None:
    d, now, since, last = StallDetector(3), 0.0, 0.0, None
    for offset, dt in steps:
        now += dt
        if offset != last:
            since, last = now, offset
        d.observe({TP: offset}, now)
        assert (TP in d.stalled) == (now - since >= 3)


def test_a_partition_that_cannot_commit_is_stuck_until_a_commit_carries_it() -> None:
    from consumer.core.stalls import CommitWatch

    watch = CommitWatch(after_s=10)
    tp = ("uploads", 0)
    assert watch.observe([tp], 0.0) == []
    # transactions abort and rewind over and over: the partition keeps work, nothing commits
    assert watch.observe([tp], 5.0) == []
    assert watch.observe([], 7.0) == []  # a rewind dropped its work for a moment: the clock goes on
    assert watch.observe([tp], 10.0) == [tp] and watch.stuck == {tp}
    assert watch.observe([tp], 11.0) == []  # reported once
    watch.committed([tp])
    assert watch.stuck == set()
    assert watch.observe([tp], 12.0) == []
    assert watch.observe([tp], 21.9) == []


@given(st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=30))
def test_steady_commits_never_look_stuck(gaps: list[float]) -> None:
    from consumer.core.stalls import CommitWatch

    watch, now, tp = CommitWatch(after_s=5), 0.0, ("t", 1)
    for gap in gaps:
        now += min(gap, 4.9)
        assert watch.observe([tp], now) == [] or False
        watch.committed([tp])


def test_a_position_that_stays_while_records_wait_is_a_partition_not_moving() -> None:
    from consumer.core.stalls import StallDetector, positions_behind

    detector, a, b, c = StallDetector(after_s=5), ("t", 0), ("t", 1), ("t", 2)
    # a: records wait and the position moves; b: records wait, the position never moves (a member
    # that takes none: it believes it owns b, its group gave b to another); c: nothing waits
    rounds = [({a: 3, b: 7, c: 0}, {a: 10, b: 40, c: 5}), ({a: 2, b: 9, c: 0}, {a: 12, b: 40, c: 5})]
    rounds += [({a: 4, b: 12, c: 0}, {a: 15, b: 40, c: 5})]
    newly = []
    for i, (lags, positions) in enumerate(rounds):
        newly += detector.observe(positions_behind(lags, positions, {}), now=i * 5.0)
    assert newly == [b] and detector.stalled == {b}
    # the position moves again (or nothing waits any more): no longer stalled
    detector.observe(positions_behind({a: 0, b: 3, c: 0}, {a: 19, b: 41, c: 5}, {}), now=15.0)
    assert detector.stalled == set()


def test_a_partition_never_committed_is_measured_from_its_log_start() -> None:
    from consumer.core.stalls import positions_behind

    assert positions_behind({("t", 0): 5, ("t", 1): 0}, {("t", 0): None}, {("t", 0): 100}) == {
        ("t", 0): 100,
        ("t", 1): None,
    }


def test_a_partition_left_with_nothing_to_commit_is_no_longer_stuck() -> None:
    from consumer.core.stalls import CommitWatch

    watch, tp = CommitWatch(after_s=5), ("uploads", 3)
    watch.observe([tp], 0.0)
    assert watch.observe([tp], 5.0) == [tp]  # stuck: its transactions kept failing
    # a rewind dropped its work; everything of it had been committed already, so no commit will
    # ever carry it again: once it has had nothing outstanding for after_s it is not stuck
    watch.observe([], 6.0)
    assert watch.stuck == {tp}  # a moment without work is not enough
    watch.observe([], 11.0)
    assert watch.stuck == set()
    assert watch.observe([tp], 12.0) == []  # new work starts a new clock
