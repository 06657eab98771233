"""Review decisions (index maintenance input), single-object encoded: decode, the typed record and
its contract (ids, the tenant grammar, bounded note and reviewer, media). Documented errors:
``SerializationError`` (with ``InvalidRecordError``)."""

from __future__ import annotations

from consumer.core.records import ReviewDecision
from consumer.core.validation import validate_review
from consumer.errors import SerializationError
from consumer.serde import AvroCodec

__all__ = ["test_one_input"]

CODEC = AvroCodec()
INLINE_LIMIT = 1_000_000  # processing.inline_media_limit_bytes' default


def test_one_input(data: bytes) -> None:
    try:
        record = CODEC.decode(data, "ReviewDecision")
    except SerializationError:
        return
    decision = ReviewDecision.from_avro(record)
    try:
        validate_review(decision, inline_limit=INLINE_LIMIT)
    except SerializationError:
        return
    decision.to_avro()
