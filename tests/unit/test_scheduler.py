"""Properties of the scheduler: per-key order, bounds, no starvation, pause hysteresis."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.scheduler import Mode, Scheduler, Work

records = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from([b"a", b"b", b"c", b"d", None]), st.integers(1, 500)),
    min_size=1,
    max_size=80,
)


def feed(scheduler: Scheduler, spec: list[tuple[int, bytes | None, int]]) -> list[Work]:
    offsets = {p: 0 for p in range(3)}
    works = []
    for partition, key, size in spec:
        work = Work(("t", partition), offsets[partition], key, size)
        offsets[partition] += 1
        scheduler.offer(work)
        works.append(work)
    return works


def run(scheduler: Scheduler, seed: int) -> list[Work]:
    """Start what is ready, finish a random running record, until all are done; the start order."""
    rng = random.Random(seed)
    running: list[Work] = []
    order: list[Work] = []
    while True:
        started = scheduler.ready()
        order += started
        running += started
        assert scheduler.in_flight <= scheduler.max_records
        assert scheduler.in_flight == 1 or scheduler.in_flight_bytes <= scheduler.max_bytes
        if not running:
            return order
        scheduler.done(running.pop(rng.randrange(len(running))))


@settings(max_examples=200)
@given(records, st.integers(1, 8), st.integers(100, 2000), st.integers())
def test_key_mode_keeps_offset_order_per_key_and_finishes_everything(
    spec: list[tuple[int, bytes | None, int]], max_records: int, max_bytes: int, seed: int
) -> None:
    scheduler = Scheduler(Mode.KEY, max_records=max_records, max_bytes=max_bytes)
    works = feed(scheduler, spec)
    order = run(scheduler, seed)
    assert sorted(id(w) for w in order) == sorted(id(w) for w in works)  # nothing lost or doubled
    for key in (b"a", b"b", b"c", b"d"):
        for p in range(3):
            same = [w.offset for w in order if w.key == key and w.tp == ("t", p)]
            assert same == sorted(same)


@given(records, st.integers())
def test_partition_mode_runs_one_record_per_partition_in_order(
    spec: list[tuple[int, bytes | None, int]], seed: int
) -> None:
    scheduler = Scheduler(Mode.PARTITION, max_records=10)
    feed(scheduler, spec)
    rng = random.Random(seed)
    running: list[Work] = []
    order: list[Work] = []
    while True:
        started = scheduler.ready()
        running += started
        order += started
        assert len({w.tp for w in running}) == len(running)  # never two of one partition at once
        if not running:
            break
        scheduler.done(running.pop(rng.randrange(len(running))))
    for p in range(3):
        offsets = [w.offset for w in order if w.tp == ("t", p)]
        assert offsets == sorted(offsets)


def test_different_keys_run_in_parallel_inside_one_partition() -> None:
    scheduler = Scheduler(Mode.KEY, max_records=10)
    for offset, key in enumerate([b"a", b"a", b"b", b"c"]):
        scheduler.offer(Work(("t", 0), offset, key, 1))
    assert [(w.offset, w.key) for w in scheduler.ready()] == [(0, b"a"), (2, b"b"), (3, b"c")]


def test_unordered_mode_runs_same_key_in_parallel() -> None:
    scheduler = Scheduler(Mode.UNORDERED, max_records=10)
    for offset in range(3):
        scheduler.offer(Work(("t", 0), offset, b"a", 1))
    assert len(scheduler.ready()) == 3


def test_a_record_larger_than_the_byte_budget_still_runs_alone() -> None:
    scheduler = Scheduler(max_records=10, max_bytes=100)
    scheduler.offer(Work(("t", 0), 0, b"a", 500))
    scheduler.offer(Work(("t", 0), 1, b"b", 10))
    first = scheduler.ready()
    assert [w.offset for w in first] == [0]
    scheduler.done(first[0])
    assert [w.offset for w in scheduler.ready()] == [1]


def test_pause_and_resume_with_hysteresis() -> None:
    scheduler = Scheduler(max_records=1, pause_at=4, resume_at=1)
    for offset in range(5):
        scheduler.offer(Work(("t", 0), offset, b"k", 1))
    assert scheduler.to_pause() == [("t", 0)] and scheduler.to_pause() == []
    running = scheduler.ready()
    for _ in range(3):  # 4 waiting ⇒ 1 waiting: still paused until it reaches resume_at
        scheduler.done(running[0])
        running = scheduler.ready()
        assert scheduler.to_resume() == ([] if scheduler.queued > 1 else [("t", 0)])
    assert scheduler.paused == 0


def test_buffered_bytes_pause_everything() -> None:
    scheduler = Scheduler(max_records=1, pause_at=100, max_buffered_bytes=1000)
    scheduler.offer(Work(("t", 0), 0, b"a", 600))
    scheduler.offer(Work(("t", 1), 0, b"b", 600))
    assert sorted(scheduler.to_pause()) == [("t", 0), ("t", 1)]
    started = scheduler.ready()
    assert scheduler.to_resume() == []  # 600 still buffered: above half the budget
    scheduler.done(started[0])
    scheduler.ready()
    assert sorted(scheduler.to_resume()) == [("t", 0), ("t", 1)]


def test_dropping_a_revoked_partition_returns_its_waiting_records() -> None:
    scheduler = Scheduler(max_records=1)
    for offset in range(3):
        scheduler.offer(Work(("t", 0), offset, b"k", 10))
    started = scheduler.ready()
    dropped = scheduler.drop(("t", 0))
    assert [w.offset for w in dropped] == [1, 2] and scheduler.buffered_bytes == 0
    scheduler.done(started[0])  # a late completion of the revoked partition is harmless
    assert scheduler.ready() == []


def test_a_narrowed_window_holds_records_beyond_it_until_lifted() -> None:
    scheduler = Scheduler(Mode.UNORDERED, max_records=10)
    for offset in range(6):
        scheduler.offer(Work(("t", 0), offset, None, 1))
    scheduler.offer(Work(("t", 1), 0, None, 1))
    scheduler.narrow(("t", 0), 2)
    started = scheduler.ready()
    assert sorted((w.tp[1], w.offset) for w in started) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert scheduler.ready() == []  # the other partition is not held up, offsets 3.. wait
    scheduler.narrow(("t", 0), None)
    assert [w.offset for w in scheduler.ready()] == [3, 4, 5]
