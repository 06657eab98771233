"""Committed offsets' metadata is outside input: any client that can commit for the group writes it,
and the service reads it back on every assignment. Its cost must be its size, never what it claims."""

from __future__ import annotations

import base64
import time
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from consumer.core import offsetmap
from consumer.core.offsets import OffsetTracker

TP = ("uploads", 0)


def _varints(*numbers: int) -> bytes:
    out = bytearray()
    for n in numbers:
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                break
    return bytes(out)


def _forged(*runs: int) -> str:
    return offsetmap.PREFIX + base64.urlsafe_b64encode(_varints(*runs)).rstrip(b"=").decode()


def test_a_forged_map_claiming_2_to_the_62_offsets_costs_its_size() -> None:
    claim = _forged(1, 1 << 62)  # "everything after the committed offset is finished"
    tracker = OffsetTracker()
    tracemalloc.start()
    started = time.perf_counter()
    claimed = tracker.restore(TP, 100, claim)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert claimed == 1 << 62
    assert elapsed < 0.05 and peak < 64 << 10
    # the committed offset itself is read again; the claimed ones are skipped one by one, cheaply
    assert tracker.track(TP, 100) is True
    assert tracker.track(TP, 101) is False
    # and committing again re-encodes the claim in bounded metadata
    tracker.complete(TP, 100)
    position = tracker.committable()[TP]
    assert position.offset == 102 and len(position.metadata) <= offsetmap.MAX_METADATA_BYTES


def test_many_forged_intervals_cost_their_size() -> None:
    pairs = [n for _ in range(1000) for n in (1, 1 << 40)]  # the broker's 4 KiB allows ~700 of these
    claim = _forged(*pairs)
    started = time.perf_counter()
    assert OffsetTracker().restore(TP, 0, claim) == 1000 << 40
    assert time.perf_counter() - started < 0.1


def test_the_set_view_refuses_a_huge_claim() -> None:
    try:
        offsetmap.decode(0, _forged(1, 1 << 62))
    except ValueError as exc:
        assert "more than" in str(exc)
    else:
        raise AssertionError("a claim of 2^62 offsets was expanded")


def test_malformed_or_foreign_metadata_is_ignored() -> None:
    foreign = [
        None,
        "",
        "m1",
        "m1:!!!!",  # not base64
        offsetmap.PREFIX + "A" * (offsetmap.MAX_READ_BYTES),  # longer than we ever write
        offsetmap.PREFIX + base64.urlsafe_b64encode(b"\xff" * 20).decode(),  # a varint past 63 bits
        offsetmap.PREFIX + base64.urlsafe_b64encode(b"\x80" * 20).decode(),  # endless continuation
        offsetmap.PREFIX + base64.urlsafe_b64encode(b"\x02\x81").decode(),  # truncated varint
        _forged(0, 5),  # claims the committed offset itself
        "someone else's metadata",
    ]
    for metadata in foreign:
        tracker = OffsetTracker()
        assert tracker.restore(TP, 100, metadata) == 0, metadata
        assert tracker.track(TP, 100) is True
        assert tracker.track(TP, 101) is True  # nothing skipped: the work is done again


@given(st.text(max_size=300), st.integers(min_value=0, max_value=1 << 40))
def test_any_metadata_decodes_to_ascending_intervals_beyond_the_commit(metadata: str, base: int) -> None:
    runs = offsetmap.decode_runs(base, offsetmap.PREFIX + metadata)
    assert len(runs) <= len(metadata)
    previous = base
    for start, end in runs:
        assert previous < start < end
        previous = end


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=1 << 40))
def test_any_bytes_as_a_map_decode_within_bounds(raw: bytes, base: int) -> None:
    metadata = offsetmap.PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    runs = offsetmap.decode_runs(base, metadata)
    assert all(base < start < end < base + (len(raw) + 1) * (1 << 63) for start, end in runs)


@given(st.sets(st.integers(min_value=101, max_value=400), max_size=80))
def test_intervals_round_trip_through_encode(done: set[int]) -> None:
    metadata, cut = offsetmap.encode(100, done)
    assert cut is None
    assert offsetmap.decode(100, metadata) == done
    again, _ = offsetmap.encode(100, (), intervals=offsetmap.decode_runs(100, metadata))
    assert again == metadata
