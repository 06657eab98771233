"""Dead letters as ``dlq replay`` and ``dlq`` tools read them from the dead-letter topic (anyone who
can write that topic writes these bytes): decode, the typed letter, and what the tools derive from
it (its key, headers, a bounded copy). Documented error: ``SerializationError``."""

from __future__ import annotations

from consumer.core.deadletter import DeadLetter
from consumer.errors import SerializationError
from consumer.serde import AvroCodec

__all__ = ["test_one_input"]

CODEC = AvroCodec()


def test_one_input(data: bytes) -> None:
    try:
        record = CODEC.decode(data, "DeadLetter")
    except SerializationError:
        return
    letter = DeadLetter.from_avro(record)
    letter.kafka_key()
    letter.headers()
    letter.bounded(64 << 10).to_avro()
