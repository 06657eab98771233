"""Writer schemas are checked before a body is decoded with them; bodies are bounded before the C
reader sees them (``consumer.core.writer_schemas``)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.writer_schemas import (
    MAX_COLLECTION_ITEMS,
    MAX_SCHEMA_DEPTH,
    BodyLimits,
    check_writer_schema,
    parse_writer_schema,
    reader_gap,
)
from consumer.errors import SerializationError
from consumer.serde import AvroCodec, default_schema_dir
from tests.factories import avro_long

CODEC = AvroCodec()
UPLOAD: dict[str, Any] = json.loads((default_schema_dir() / "UploadEvent.avsc").read_text())


def _with_field(field: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(UPLOAD)
    schema["fields"].append(field)
    return schema


def test_every_shipped_schema_passes() -> None:
    for path in [*default_schema_dir().glob("*.avsc"), *(default_schema_dir() / "history").glob("*.avsc")]:
        check_writer_schema(json.loads(path.read_text()))


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ({"name": "x", "type": {"type": "array", "items": "null"}, "default": []}, "take no bytes"),
        (
            {
                "name": "x",
                "type": {"type": "array", "items": {"type": "record", "name": "E", "fields": []}},
                "default": [],
            },
            "take no bytes",
        ),
        (
            {"name": "x", "type": {"type": "array", "items": {"type": "fixed", "name": "Z", "size": 0}}},
            "take no bytes",
        ),
        ({"name": "next", "type": ["null", "UploadEvent"], "default": None}, "recursive"),
        ({"name": "x", "type": "Nowhere"}, "undefined type"),
        ({"name": "x", "type": []}, "empty union"),
    ],
)
def test_refuses_recursive_and_null_arrays(field: dict[str, Any], reason: str) -> None:
    with pytest.raises(SerializationError, match=reason):
        check_writer_schema(_with_field(field))


@pytest.mark.parametrize(
    "inline",
    [{"type": ["null", "long"]}, {"type": {"type": "long"}}, {"type": {"type": "array", "items": "long"}}],
)
def test_a_type_given_inline_as_a_union_or_an_object_is_walked_not_a_crash(inline: dict[str, Any]) -> None:
    """Found by the writer_schema fuzz target: ``{"type": [...]}`` was looked up in a set (TypeError)."""
    schema = _with_field({"name": "x", "type": inline})
    check_writer_schema(schema)
    BodyLimits(schema, max_items=4)
    with pytest.raises(SerializationError, match="without a type"):
        check_writer_schema(_with_field({"name": "x", "type": {"type": 5}}))


def test_refuses_indirect_recursion_and_depth() -> None:
    inner = {
        "type": "record",
        "name": "A",
        "fields": [
            {
                "name": "b",
                "type": {"type": "record", "name": "B", "fields": [{"name": "a", "type": ["null", "A"]}]},
            }
        ],
    }
    with pytest.raises(SerializationError, match="recursive"):
        check_writer_schema(_with_field({"name": "x", "type": inner}))
    deep: Any = "string"
    for _ in range(MAX_SCHEMA_DEPTH + 2):
        deep = {"type": "array", "items": deep}
    with pytest.raises(SerializationError, match="deeper"):
        check_writer_schema(_with_field({"name": "x", "type": deep}))
    with pytest.raises(SerializationError, match="not a record"):
        check_writer_schema("string")


def test_parse_bounds_size_and_nesting() -> None:
    with pytest.raises(SerializationError, match="over"):
        parse_writer_schema(" " * (300 * 1024))
    with pytest.raises(SerializationError, match=r"nested too deeply|not JSON"):
        parse_writer_schema("[" * 100_000)
    with pytest.raises(SerializationError, match="not JSON"):
        parse_writer_schema("{")


def test_reader_gap() -> None:
    assert reader_gap(_with_field({"name": "extra", "type": "long"}), UPLOAD) is None
    renamed = dict(UPLOAD, name="Other")
    assert "not moderation.events.UploadEvent" in (reader_gap(renamed, UPLOAD) or "")
    missing = dict(UPLOAD, fields=[f for f in UPLOAD["fields"] if f["name"] != "tenant_id"])
    assert "tenant_id" in (reader_gap(missing, UPLOAD) or "")


def _upload_body(metadata_items: int, media: int = 0) -> bytes:
    record = {
        "upload_id": "u",
        "tenant_id": "t",
        "user_id": "u",
        "media_type": "IMAGE",
        "created_at": 1,
        "media_bytes": b"x" * media,
        "metadata": {f"k{i}": "v" for i in range(metadata_items)},
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(UPLOAD), record)
    return buf.getvalue()


def test_body_limits_cap_items_and_check_lengths() -> None:
    limits = BodyLimits(UPLOAD)
    limits.check(_upload_body(MAX_COLLECTION_ITEMS, media=10_000), 0)  # at the limit: read
    with pytest.raises(SerializationError, match="more than"):
        limits.check(_upload_body(MAX_COLLECTION_ITEMS + 1), 0)
    # a map declaring 2^40 entries in a body of a few kilobytes
    head = b"".join([avro_long(1) + b"u", avro_long(1) + b"t", avro_long(1) + b"u", avro_long(0)])
    nulls = avro_long(0) * 6 + avro_long(2)  # six null branches, created_at
    hostile = head + nulls + avro_long(1 << 40) + b"\x00" * 5000
    with pytest.raises(SerializationError, match="block of items"):
        limits.check(hostile, 0)
    long_string = avro_long(1) + b"u" + avro_long(1 << 50) + b"\x00" * 5000
    with pytest.raises(SerializationError, match="length"):
        limits.check(long_string, 0)


def test_a_hostile_map_is_refused_before_fastavro() -> None:
    """500,000 empty map entries in one megabyte: fastavro alone loops for about half a second."""
    head = b"".join([avro_long(1) + b"u", avro_long(1) + b"t", avro_long(1) + b"u", avro_long(0)])
    body = head + avro_long(0) * 6 + avro_long(2) + avro_long(500_000) + b"\x00\x00" * 500_000 + avro_long(0)
    data = b"\xc3\x01" + CODEC.schema("UploadEvent").fingerprint + body
    with pytest.raises(SerializationError, match="more than 1024"):
        CODEC.decode(data, "UploadEvent")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=3000))
def test_walk_raises_only_serialization_errors(tail: bytes) -> None:
    limits = BodyLimits(UPLOAD, max_items=8)
    data = _upload_body(3)[:20] + tail + b"\x00" * MAX_COLLECTION_ITEMS
    with contextlib.suppress(SerializationError):
        limits.check(data, 0)
