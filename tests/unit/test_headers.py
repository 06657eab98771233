"""Record headers count in every byte bound; a record over the intake's caps is a dead letter that
keeps none of them, with their count and size recorded (issue 22, "every byte counts")."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st

from consumer.config import load_settings
from consumer.core.deadletter import OVERHEAD_BYTES, DeadLetter, Failure
from consumer.core.headers import CUT_COUNT, CUT_SIZE, check_headers, measure, over_caps
from consumer.core.scheduler import Work
from consumer.delivery.outputs import Outputs, Received
from consumer.errors import InvalidRecordError
from consumer.serde import AvroCodec
from tests.factories import RecordingSink, recording_outputs

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_size_is_names_and_values_in_bytes() -> None:
    assert measure(None) == (0, 0)
    assert measure([]) == (0, 0)
    assert measure([("traceparent", TRACEPARENT)]) == (1, 11 + len(TRACEPARENT))
    assert measure([("a", None), ("b", b""), (b"cc", b"xyz")]) == (3, 1 + 1 + 2 + 3)
    # a name counts in UTF-8 bytes, not characters (four bytes each here)
    assert measure([("\U0001f600" * 10, b"v")]) == (1, 41)
    assert measure([("k", "é")]) == (1, 3)


@given(st.lists(st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=50))), max_size=30))
def test_size_is_what_the_wire_carries(headers: list[tuple[str, bytes | None]]) -> None:
    expected = sum(len(k.encode("utf-8", "surrogatepass")) + len(v or b"") for k, v in headers)
    assert measure(headers) == (len(headers), expected)


def test_caps_refuse_one_header_or_byte_too_many_with_one_clear_line() -> None:
    check_headers(64, 65_536, 64, 65_536)  # at the caps: accepted
    assert not over_caps(64, 65_536, 64, 65_536)
    for count, size in ((65, 10), (1, 65_537)):
        assert over_caps(count, size, 64, 65_536)
        with pytest.raises(InvalidRecordError) as raised:
            check_headers(count, size, 64, 65_536)
        message = str(raised.value)
        assert "\n" not in message
        assert (
            f"{count} headers of {size} bytes" in message and "at most 64 headers of 65536 bytes" in message
        )
    with pytest.raises(InvalidRecordError):
        check_headers(1, 0, 0, 65_536)  # max_header_count 0: no header at all


def test_a_letter_with_cut_headers_records_their_count_and_size() -> None:
    letter = DeadLetter(
        b"k", b"v", "uploads", 0, 3, Failure("InvalidRecordError", "m"), headers_cut=(9, 900_000)
    )
    headers = dict(letter.headers())
    assert headers[CUT_COUNT] == b"9" and headers[CUT_SIZE] == b"900000"
    assert CUT_COUNT not in dict(DeadLetter(b"k", b"v", "uploads", 0, 3, Failure("X", "m")).headers())


def test_headers_a_letter_carries_count_against_its_limit() -> None:
    limit = 1_000_000
    value = b"v" * (limit - OVERHEAD_BYTES - 4096)
    whole = DeadLetter(b"k", value, "uploads", 0, 7, Failure("X", "m"))
    assert whole.bounded(limit) is whole  # fits without copied headers
    cut = whole.bounded(limit, header_bytes=20_000)
    assert cut.original_value is not None and len(cut.original_value) < len(value)
    encoded = AvroCodec().encode("DeadLetter", cut.to_avro())
    own = sum(len(k) + len(v or b"") for k, v in cut.headers())
    assert len(encoded) + own + 20_000 + len(cut.kafka_key() or b"") < limit


# --- the dead letter a record over the caps gets ---------------------------------------------------


def outputs(sink: RecordingSink) -> Outputs:
    return recording_outputs(sink, max_header_count=4, max_header_bytes=1000)


def letter_for(headers: list[tuple[str, bytes | None]]) -> dict[str, Any]:
    msg = Message(topic="uploads", partition=0, offset=5, key=b"k", value=b"v", headers=headers)
    count, size = measure(msg.headers())
    work = Work(("uploads", 0), 5, b"k", 2 + size, Received(msg, 1, count, size))
    sink = RecordingSink()
    failure = Failure("InvalidRecordError", "record headers over the limit")
    outputs(sink).dead_letter(work, failure, None)
    ((topic, _, _, produced),) = sink.produced
    assert topic == load_settings().kafka.dlq_topic
    return dict(produced)


def test_a_record_within_the_caps_keeps_its_trace_on_its_dead_letter() -> None:
    found = letter_for([("traceparent", TRACEPARENT), ("x-other", b"o")])
    assert found["traceparent"] == TRACEPARENT
    assert CUT_COUNT not in found and "x-other" not in found


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", TRACEPARENT), ("x-big", b"b" * 2000)],  # over the bytes cap
        [("traceparent", TRACEPARENT)] + [(f"h{i}", b"") for i in range(10)],  # over the count cap
    ],
    ids=["bytes", "count"],
)
def test_a_record_over_the_caps_keeps_none_of_its_headers(headers: list[tuple[str, bytes | None]]) -> None:
    found = letter_for(headers)
    assert "traceparent" not in found and "x-big" not in found and "h0" not in found
    count, size = measure(headers)
    assert found[CUT_COUNT] == str(count).encode() and found[CUT_SIZE] == str(size).encode()
    assert found["dlq.error.class"] == b"InvalidRecordError"
