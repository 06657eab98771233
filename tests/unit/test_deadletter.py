"""Dead letters keep the record whole and say where it came from and why it failed."""

from __future__ import annotations

from consumer.deadletter import HEADERS, DeadLetter, Failure
from consumer.errors import InvalidRecordError
from consumer.serde import AvroCodec


def test_round_trips_through_avro_with_provenance_headers() -> None:
    failure = Failure.of(
        InvalidRecordError("record has no key"), attempts=2, first_at_ms=1000, last_at_ms=2000
    )
    letter = DeadLetter(None, b"\x00raw", "uploads", 3, 42, failure, upload_id="u1")
    codec = AvroCodec()
    back = DeadLetter.from_avro(codec.decode(codec.encode("DeadLetter", letter.to_avro()), "DeadLetter"))
    assert back == letter
    headers = dict(letter.headers())
    assert headers[HEADERS["source_topic"]] == b"uploads"
    assert headers[HEADERS["source_partition"]] == b"3"
    assert headers[HEADERS["source_offset"]] == b"42"
    assert headers[HEADERS["error_class"]] == b"InvalidRecordError"
    assert headers[HEADERS["error_message"]] == b"record has no key"
    assert headers[HEADERS["attempts"]] == b"2"


def test_long_messages_are_cut() -> None:
    letter = DeadLetter(b"k", b"v", "uploads", 0, 0, Failure("X", "m" * 5000, 1, 0, 0))
    assert len(letter.to_avro()["error_message"]) == 1000
