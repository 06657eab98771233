"""Uploads in Avro single-object encoding (``C3 01`` + fingerprint + body), as the service takes
them from the input topic: decode, the typed record, the input contract. Documented errors:
``SerializationError`` (with ``InvalidRecordError``)."""

from __future__ import annotations

from consumer.core.records import UploadEvent
from consumer.core.validation import validate_upload
from consumer.errors import SerializationError
from consumer.serde import AvroCodec

__all__ = ["INLINE_LIMIT", "accept", "test_one_input"]

CODEC = AvroCodec()
INLINE_LIMIT = 1_000_000  # processing.inline_media_limit_bytes' default


def accept(record: dict[str, object]) -> None:
    """What intake does with a decoded upload: the typed record, then the contract (the key is the
    upload id, as producers write it)."""
    event = UploadEvent.from_avro(record)
    try:
        validate_upload(event, event.upload_id.encode("utf-8", "surrogatepass"), inline_limit=INLINE_LIMIT)
    except SerializationError:
        return


def test_one_input(data: bytes) -> None:
    try:
        record = CODEC.decode(data, "UploadEvent")
    except SerializationError:
        return
    accept(record)
