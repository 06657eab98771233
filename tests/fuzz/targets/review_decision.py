"""Review decisions (index maintenance input), single-object encoded: decode and the typed record.
Documented error: ``SerializationError``."""

from __future__ import annotations

from consumer.core.records import ReviewDecision
from consumer.errors import SerializationError
from consumer.serde import AvroCodec

__all__ = ["test_one_input"]

CODEC = AvroCodec()


def test_one_input(data: bytes) -> None:
    try:
        record = CODEC.decode(data, "ReviewDecision")
    except SerializationError:
        return
    decision = ReviewDecision.from_avro(record)
    decision.to_avro()
