"""The input contract beyond Avro: each broken rule is named in one clear message."""

from __future__ import annotations

import time

import pytest

from consumer.core.records import MediaType, UploadEvent
from consumer.core.validation import (
    MAX_CONTENT_TYPE_LENGTH,
    check_record_size,
    normalized_content_type,
    validate_upload,
)
from consumer.errors import InvalidRecordError, SerializationError


def upload(**kw: object) -> UploadEvent:
    fields: dict[str, object] = {
        "upload_id": "u1",
        "tenant_id": "t",
        "user_id": "user",
        "media_type": MediaType.IMAGE,
        "created_at": 0,
        "media_url": "https://cdn.example.com/a.jpg",
    }
    fields.update(kw)
    return UploadEvent(**fields)  # type: ignore[arg-type]


def test_a_valid_upload_passes() -> None:
    validate_upload(upload(content_type="image/jpeg; q=1"), b"u1", inline_limit=10)


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"tenant_id": ""}, b"u1", "missing required field tenant_id"),
        ({"media_url": None}, b"u1", "missing required field media_url or media_bytes"),
        ({"media_type": MediaType.TEXT, "media_url": None}, b"u1", "missing required field text"),
        ({}, None, "has no key"),
        ({"media_url": None, "media_bytes": b"x" * 11}, b"u1", "over the 10-byte limit"),
        ({"media_url": "ftp://host/a.jpg"}, b"u1", "scheme must be http or https"),
        ({"media_url": "not a url"}, b"u1", "malformed media_url"),
        ({"media_url": "http://host:99999/a"}, b"u1", "malformed media_url"),
        ({"content_type": "application/pdf"}, b"u1", "unsupported media type application/pdf"),
        ({"media_type": MediaType.VIDEO, "content_type": "image/png"}, b"u1", "unsupported media type"),
    ],
)
def test_broken_rules_are_named(changes: dict[str, object], key: bytes | None, message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message) as caught:
        validate_upload(upload(**changes), key, inline_limit=10)
    assert isinstance(caught.value, SerializationError)  # dead-lettered like undecodable bytes


def test_urls_never_appear_in_messages() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        validate_upload(upload(media_url="ftp://host/a.jpg?token=s3cret"), b"u1", inline_limit=10)
    assert "s3cret" not in str(caught.value)


def test_record_size_counts_key_and_value() -> None:
    check_record_size(len(b"k") + 9, 10)
    with pytest.raises(InvalidRecordError, match="11 bytes is over the 10-byte limit"):
        check_record_size(len(b"kk") + 9, 10)


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png\r\nX-Evil: 1",
        "image/png\nX-Evil: 1",
        "image/png\rX-Evil: 1",
        'image/png; name="a\r\nX-Evil: 1"',
        "image/png\x00",
        'image/png; a="\x00"',
        'image/png; a="x\x7f"',
        'image/png; a="\tx"',
        "image/pn\u0261",
        "image/png; name=caf\u00e9",
        'image/png; name="caf\u00e9"',
        "image/png\u2028X-Evil: 1",
        'image/png; name="unterminated',
        'image/png; name="a"b"',
        "image/png; name=a b",
        "image/png; =b",
        "image/png; a=",
        "image/png; a",
        "image/png/x",
        "image",
        "/png",
        "image/",
        "image /png",
        "image/png, text/plain",
        "image/png" + " " * 10 + "\v",
        "image/" + "p" * MAX_CONTENT_TYPE_LENGTH,
    ],
)
def test_malformed_content_types_are_dead_letters(content_type: str) -> None:
    with pytest.raises(InvalidRecordError, match="malformed content_type") as caught:
        validate_upload(upload(content_type=content_type), b"u1", inline_limit=10)
    message = str(caught.value)
    assert message.isprintable()  # escaped: no CR, LF or NUL can ride along into a header or log line
    assert len(message) < 120
    assert normalized_content_type(content_type) is None


@pytest.mark.parametrize(
    ("content_type", "normalized"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        (" image/jpeg ", "image/jpeg"),
        ("image/jpeg;q=1", "image/jpeg"),
        ("image/jpeg ;\tq=1 ; x=y;", "image/jpeg"),
        ('image/jpeg; name="a \\"quoted\\" name; with=semicolon"', "image/jpeg"),
        ("image/jpeg; x=!#$%&'*+-.^_`|~09azAZ", "image/jpeg"),
        (None, None),
        ("", None),
    ],
)
def test_well_formed_content_types_normalize_to_type_and_subtype(
    content_type: str | None, normalized: str | None
) -> None:
    assert normalized_content_type(content_type) == normalized
    validate_upload(upload(content_type=content_type), b"u1", inline_limit=10)


def test_a_malformed_content_type_is_refused_on_text_uploads_too() -> None:
    text = upload(media_type=MediaType.TEXT, media_url=None, text="hi", content_type="text/plain\r\nX: 1")
    with pytest.raises(InvalidRecordError, match="malformed content_type"):
        validate_upload(text, b"u1", inline_limit=10)


def test_an_overlong_content_type_quotes_only_a_short_prefix() -> None:
    content_type = "image/png; a=" + "b" * 10_000
    with pytest.raises(InvalidRecordError, match="over 255 characters") as caught:
        validate_upload(upload(content_type=content_type), b"u1", inline_limit=10)
    assert len(str(caught.value)) < 120


def test_a_pathological_content_type_fails_fast() -> None:
    for hostile in ("a/b" + ";  " * 80 + "\x00", "a/b; x=" + "a" * 240 + "\x00", 'a/b; x="' + "\\\\" * 120):
        started = time.perf_counter()
        assert len(hostile) <= MAX_CONTENT_TYPE_LENGTH
        assert normalized_content_type(hostile) is None
        assert time.perf_counter() - started < 0.05  # no catastrophic backtracking
