"""Lag in time and uploads appended (``consumer.kafka.lag``): what the watch's round computes from the
records the process holds and from the log end offsets it reads."""

from __future__ import annotations

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE, Message
from hypothesis import given
from hypothesis import strategies as st

from consumer.kafka.lag import Appended, ages, oldest_timestamps

A, B, C = ("uploads", 0), ("uploads", 1), ("uploads", 2)


def record(tp: tuple[str, int], offset: int, ms: int, kind: int = TIMESTAMP_CREATE_TIME) -> Message:
    return Message(topic=tp[0], partition=tp[1], offset=offset, timestamp=(kind, ms))


def test_the_oldest_timestamp_of_each_partition_whatever_the_order_held() -> None:
    held = [
        (A, record(A, 7, 5_000)),
        (A, record(A, 5, 3_000, TIMESTAMP_LOG_APPEND_TIME)),
        (B, record(B, 2, 9_000)),
        (A, record(A, 9, 4_000)),  # a producer's clock: timestamps need not follow offsets
    ]
    assert oldest_timestamps(held) == {A: 3_000, B: 9_000}


def test_a_record_without_a_timestamp_does_not_count() -> None:
    held = [(A, record(A, 1, 0, TIMESTAMP_NOT_AVAILABLE)), (A, record(A, 2, -1)), (B, record(B, 1, 0, 0))]
    assert oldest_timestamps(held) == {}


def test_ages_in_seconds_zero_when_nothing_is_held_or_the_clock_is_behind() -> None:
    now = 1_000_000
    assert ages([A, B, C], {A: now - 90_500, C: now + 4_000}, now) == {A: 90.5, B: 0.0, C: 0.0}
    assert ages([], {A: 1}, now) == {}


def test_appended_counts_from_the_second_reading_and_forgets_revoked_partitions() -> None:
    appended = Appended()
    assert appended.update({A: 100, B: 50}, [A, B]) == 0  # baselines
    assert appended.update({A: 130, B: 50}, [A, B]) == 30
    assert appended.update({B: 55}, [A, B]) == 5  # A not answered this round: its baseline stays
    assert appended.update({A: 140, B: 55}, [A, B]) == 10
    assert appended.update({A: 150}, [A]) == 10  # B revoked
    assert appended.update({A: 150, B: 90}, [A, B]) == 0  # B again: a new baseline, not 35
    assert appended.update({A: 120, B: 91}, [A, B]) == 1  # A went back (truncated): counts nothing
    assert appended.update({A: 125, B: 91}, [A, B]) == 5


@given(st.lists(st.integers(min_value=0, max_value=1_000), min_size=1, max_size=30))
def test_appended_sums_to_how_far_a_partition_moved(steps: list[int]) -> None:
    appended, end, total = Appended(), 0, 0
    appended.update({A: end}, [A])
    for step in steps:
        end += step
        total += appended.update({A: end}, [A])
    assert total == end


def test_hostile_timestamps_and_offsets_stay_bounded() -> None:
    """A producer chooses its records' CreateTime: the epoch, the far future, int64's ends; the brokers'
    log ends may go back (a truncated or recreated topic). Ages stay finite and never negative;
    appended never counts backwards."""
    now = 1_800_000_000_000
    held = [
        (A, record(A, 1, 2**63 - 1)),  # the far future
        (B, record(B, 1, 1)),  # 1970
        (C, record(C, 1, -(2**63))),  # before the epoch: no timestamp
    ]
    oldest = oldest_timestamps(held)
    assert oldest == {A: 2**63 - 1, B: 1}
    found = ages([A, B, C], oldest, now)
    assert found[A] == 0.0 and found[C] == 0.0
    assert found[B] == (now - 1) / 1000  # a huge age, honestly reported (a clock that lies pages)
    appended = Appended()
    appended.update({A: 2**62}, [A])
    assert appended.update({A: 0}, [A]) == 0
    assert appended.update({A: -1}, [A]) == 0  # an offset the broker could not give
    assert appended.update({A: 10}, [A]) == 10
