"""Whatever bytes arrive as an upload record (noise, a known header with a corrupt body, a valid record
mutated, or a valid record with hostile field values), decode + ``UploadEvent.from_avro`` +
``validate_upload`` either accept it or raise ``SerializationError`` (a dead letter): nothing else."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.core.records import MediaType, UploadEvent
from consumer.core.validation import validate_upload
from consumer.errors import SerializationError
from consumer.serde import SINGLE_OBJECT_MAGIC, AvroCodec

PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CODEC = AvroCodec()
HEADER = SINGLE_OBJECT_MAGIC + CODEC.schema("UploadEvent").fingerprint
OTHER_HEADER = SINGLE_OBJECT_MAGIC + CODEC.schema("ModerationVerdict").fingerprint
INLINE_LIMIT = 1_000


def moderate_input(data: bytes | None, key: bytes | None) -> UploadEvent | None:
    """What the service does with one input record before any provider is called."""
    with contextlib.suppress(SerializationError):  # InvalidRecordError included
        upload = UploadEvent.from_avro(CODEC.decode(data, "UploadEvent"))
        validate_upload(upload, key, inline_limit=INLINE_LIMIT)
        return upload
    return None


LONG = st.integers(-(2**63), 2**63 - 1)
TEXT = (
    st.text(max_size=40)
    | st.sampled_from(["", " ", "\t\n", "http://[::1", "http://h:99999/x", "ftp://h/x", "http://\uff03x/"])
    | st.sampled_from(['image/png; charset="a\\"b"', "image/" + "a" * 300, "text/plain;;", "Image/PNG ; q=1"])
)
OPTIONAL_TEXT = st.none() | TEXT
records = st.fixed_dictionaries(
    {
        "upload_id": TEXT,
        "tenant_id": TEXT,
        "user_id": TEXT,
        "media_type": st.sampled_from([m.value for m in MediaType]),
        "media_url": OPTIONAL_TEXT,
        "media_bytes": st.none() | st.binary(max_size=1_100),
        "text": OPTIONAL_TEXT,
        "content_sha256": OPTIONAL_TEXT,
        "content_type": OPTIONAL_TEXT,
        "size_bytes": st.none() | LONG,
        "created_at": LONG,
        "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    }
)
keys = st.none() | st.binary(max_size=20)


def encoded(record: dict[str, Any]) -> bytes:
    return CODEC.encode("UploadEvent", record)


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A valid record's bytes with one to four bytes flipped, overwritten, inserted or removed, or
    its tail cut; mostly in the body, sometimes in the header."""
    data = bytearray(encoded(draw(records)))
    for _ in range(draw(st.integers(1, 4))):
        low = 0 if draw(st.integers(0, 9)) == 0 else len(HEADER)
        pos = draw(st.integers(low, max(low, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        if action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif pos >= len(data):
            continue
        elif action == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif action == "delete":
            del data[pos]
        else:
            del data[pos:]
    return bytes(data)


@PROPERTIES
@given(data=st.none() | st.binary(max_size=200), key=keys)
def test_arbitrary_bytes_are_a_record_or_a_serialization_error(data: bytes | None, key: bytes | None) -> None:
    moderate_input(data, key)


@PROPERTIES
@given(
    header=st.sampled_from([HEADER, OTHER_HEADER]),
    body=st.binary(max_size=200)
    | st.lists(
        st.sampled_from([b"\x00", b"\x02", b"\x7f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"a"])
    ).map(b"".join),
    key=keys,
)
def test_a_known_header_with_any_body_is_a_record_or_a_serialization_error(
    header: bytes, body: bytes, key: bytes | None
) -> None:
    moderate_input(header + body, key)


@PROPERTIES
@given(data=mutated_records(), key=keys)
def test_a_mutated_record_is_a_record_or_a_serialization_error(data: bytes, key: bytes | None) -> None:
    moderate_input(data, key)


@PROPERTIES
@given(record=records, key=keys)
def test_any_field_values_decode_and_validate_or_give_a_serialization_error(
    record: dict[str, Any], key: bytes | None
) -> None:
    upload = moderate_input(encoded(record), key)
    if upload is not None:  # accepted: it honours the contract the pipeline relies on
        assert upload.upload_id.strip() and key is not None
        if upload.media_type is MediaType.TEXT:
            assert upload.text
        else:
            assert upload.media_bytes is not None or upload.media_url
            assert upload.media_bytes is None or len(upload.media_bytes) <= INLINE_LIMIT
