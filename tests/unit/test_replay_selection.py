"""Which dead letters a replay chooses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.operations.replay import Selection


def test_everything_by_default() -> None:
    assert Selection().matches(3, 10**9, "AnyError")


def test_partition_offsets_and_classes_narrow_it() -> None:
    s = Selection(partition=1, first=10, last=20, error_classes=frozenset({"PermanentError"}))
    assert s.matches(1, 10, "PermanentError") and s.matches(1, 20, "PermanentError")
    assert not s.matches(0, 15, "PermanentError")
    assert not s.matches(1, 21, "PermanentError")
    assert not s.matches(1, 15, "SerializationError")


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty offset range"):
        Selection(first=5, last=1)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 100))
def test_range_is_inclusive(first: int, span: int, offset: int) -> None:
    s = Selection(first=first, last=first + span)
    assert s.covers(0, offset) == (first <= offset <= first + span)
