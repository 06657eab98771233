"""Assignment epochs are never reused, so a stale result is never mistaken for a current one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.epochs import Epochs

TP = ("uploads", 0)


def test_a_partition_lost_and_regained_gets_a_new_epoch() -> None:
    e = Epochs()
    e.assign([TP])
    before = e.of(TP)
    e.release(TP)
    assert e.of(TP) is None and TP not in e
    e.assign([TP])
    assert e.of(TP) != before


def test_a_rewind_renews_every_assigned_partition() -> None:
    e = Epochs()
    e.assign([TP, ("uploads", 1)])
    before = {tp: e.of(tp) for tp in e}
    e.assign(e)
    assert all(e.of(tp) != epoch for tp, epoch in before.items()) and len(e) == 2


@given(st.lists(st.tuples(st.sampled_from(["assign", "release", "rewind"]), st.integers(0, 3)), max_size=50))
def test_no_epoch_is_ever_handed_out_twice(steps: list[tuple[str, int]]) -> None:
    e, seen = Epochs(), set()
    for action, partition in steps:
        tp = ("uploads", partition)
        if action == "assign":
            e.assign([tp])
        elif action == "release":
            e.release(tp)
        else:
            e.assign(e)
        for current in e:
            epoch = e.of(current)
            assert epoch is not None
            seen.add((current, epoch))
    epochs = [epoch for _, epoch in seen]
    assert len(epochs) == len(set(epochs))
