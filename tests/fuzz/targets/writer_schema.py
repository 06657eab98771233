"""Writer schemas as the registry answers them (whoever may register chooses the text) and a body
written "with" one: a schema that passes ``check_writer_schema`` and a body that passes the walk
(``BodyLimits``) must then be read by fastavro in bounded time, to a value or an error; any other
schema is refused with ``SerializationError``. The first two input bytes say where the schema text
ends and the body begins. Documented errors: ``SerializationError`` from our checks; fastavro's own
errors for a schema it finds invalid or a body that breaks it (the service dead-letters those)."""

from __future__ import annotations

import io

import fastavro

from consumer.core.writer_schemas import BodyLimits, check_writer_schema, parse_writer_schema
from consumer.errors import SerializationError

__all__ = ["test_one_input"]


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    cut = 2 + int.from_bytes(data[:2], "big") % max(1, len(data) - 1)
    text, body = data[2:cut].decode("utf-8", "replace"), data[cut:]
    try:
        schema = parse_writer_schema(text)
        check_writer_schema(schema)
        limits = BodyLimits(schema, max_items=64)
    except SerializationError:
        return
    try:
        parsed = fastavro.parse_schema(schema)
    except Exception:  # fastavro's schema errors: the service refuses such an id ("not a valid Avro schema")
        return
    padded = body + b"\x00" * 64  # long enough to be walked
    try:
        limits.check(padded, 0)
    except SerializationError:
        return
    try:
        fastavro.schemaless_reader(io.BytesIO(padded), parsed, None)
    except Exception:  # a body that breaks its schema: a dead letter
        return
