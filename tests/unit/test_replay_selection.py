"""Which dead letters a replay chooses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.delivery.replay import Selection, refusal
from consumer.errors import RegistryUnavailable, SerializationError


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


INPUTS = {"uploads": "UploadEvent", "uploads.deleted": "UploadDeleted"}


def _decodes(topic: str, record: str) -> object:
    return {"topic": topic, "record": record}


def _garbage(topic: str, record: str) -> object:
    raise SerializationError("not an Avro single-object encoded record")


@pytest.mark.parametrize("target", ["moderation.verdicts", "uploads.dlq", "unknown", "", "uploads "])
def test_replay_target_must_be_an_input(target: str) -> None:
    """A letter naming an output, the dead letter topic itself or an unknown topic is refused."""
    reason = refusal(target, INPUTS, _decodes)
    assert reason is not None and "not an input" in reason
    assert refusal("uploads", INPUTS, _decodes) is None
    assert refusal("uploads.deleted", INPUTS, _decodes) is None


def test_a_value_that_does_not_decode_as_the_inputs_record_is_refused() -> None:
    seen: list[tuple[str, str]] = []

    def decode(topic: str, record: str) -> object:
        seen.append((topic, record))
        return _garbage(topic, record)

    reason = refusal("uploads", INPUTS, decode)
    assert reason is not None and "not a UploadEvent" in reason and seen == [("uploads", "UploadEvent")]


def test_an_unreachable_registry_stops_the_replay_instead_of_refusing() -> None:
    def decode(topic: str, record: str) -> object:
        raise RegistryUnavailable("schema registry unreachable")

    with pytest.raises(RegistryUnavailable):
        refusal("uploads", INPUTS, decode)
