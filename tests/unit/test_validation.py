"""The input contract beyond Avro: each broken rule is named in one clear message."""

from __future__ import annotations

import pytest

from consumer.errors import InvalidRecordError, SerializationError
from consumer.records import MediaType, UploadEvent
from consumer.validation import check_record_size, validate_upload


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
