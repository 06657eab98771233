"""Dead letters keep the record whole and say where it came from and why it failed."""

from __future__ import annotations

from consumer.core.deadletter import HEADERS, DeadLetter, Failure
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


def test_an_oversize_record_is_cut_to_fit_with_the_originals_digest() -> None:
    import hashlib

    key, value = b"k" * 600_000, b"v" * 990_000
    whole = DeadLetter(
        key, value, "uploads", 0, 7, Failure("InvalidRecordError", "too big", 1, 0, 0), "u" * 4000
    )
    letter = whole.bounded(1_000_000)
    encoded = AvroCodec().encode("DeadLetter", letter.to_avro())
    header_bytes = sum(len(k) + len(v or b"") for k, v in letter.headers())
    kafka_key = letter.kafka_key() or b""
    assert len(encoded) + header_bytes + len(kafka_key) < 1_000_000
    assert len(kafka_key) == 64  # the long key's digest, not the key
    headers = dict(letter.headers())
    assert headers["dlq.original.value.size"] == b"990000"
    assert headers["dlq.original.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["dlq.original.key.sha256"] == hashlib.sha256(key).hexdigest().encode()
    assert value.startswith(letter.original_value or b"-") and key.startswith(letter.original_key or b"-")
    assert letter.to_avro()["upload_id"] == "u" * 512


def test_a_letter_that_fits_is_untouched_and_stripping_keeps_only_digests() -> None:
    small = DeadLetter(b"k", b"v", "uploads", 0, 0, Failure("X", "m", 1, 0, 0))
    assert small.bounded(1_000_000) is small
    stripped = small.bounded(0)
    assert (stripped.original_key, stripped.original_value) == (b"", b"")
    assert dict(stripped.headers())["dlq.original.value.size"] == b"1"
