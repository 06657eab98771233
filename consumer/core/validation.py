"""The input contract beyond what Avro enforces (pure): an upload that breaks it is a dead letter.

A content type is producer input that ends up in outgoing request headers, so it must be an
RFC 9110 media type (``type/subtype`` tokens, ``;``-separated ``name=token`` or quoted-string
parameters, printable ASCII only, at most ``MAX_CONTENT_TYPE_LENGTH`` characters) before anything
else looks at it; code that sends it uses ``normalized_content_type`` (``type/subtype`` only).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from consumer.core.records import MediaType, UploadEvent
from consumer.errors import InvalidRecordError

__all__ = [
    "MAX_CONTENT_TYPE_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_KEY_BYTES",
    "SUPPORTED_CONTENT_TYPES",
    "check_record_size",
    "normalized_content_type",
    "validate_upload",
]

# Ids travel on every verdict and in headers: long ones would make outputs the broker refuses.
MAX_ID_LENGTH = 256
MAX_KEY_BYTES = 1024

# What the providers accept (Hive: jpg, png, gif, webp images; mp4 and mov videos).
SUPPORTED_CONTENT_TYPES: dict[MediaType, frozenset[str]] = {
    MediaType.IMAGE: frozenset(
        {"image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif", "image/bmp"}
    ),
    MediaType.GIF: frozenset({"image/gif"}),
    MediaType.VIDEO: frozenset({"video/mp4", "video/quicktime"}),
    MediaType.TEXT: frozenset({"text/plain"}),
}

MAX_CONTENT_TYPE_LENGTH = 255

# RFC 9110 §8.3.1 media-type, ASCII only. Quoted strings take no control characters (not even
# HTAB); obs-text (bytes over 0x7F) is refused. Each ";" must be consumed by exactly one way
# through the pattern, so a failed match cannot backtrack exponentially.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
_MEDIA_TYPE = re.compile(
    rf"(?P<type>{_TOKEN})/(?P<subtype>{_TOKEN})(?:[ \t]*;(?:[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*"
)
_SHOWN_PREFIX = 24


def check_record_size(size: int, limit: int) -> None:
    """``size``: the record's key and value bytes together."""
    if size > limit:
        raise InvalidRecordError(f"record of {size} bytes is over the {limit}-byte limit")


def validate_upload(upload: UploadEvent, key: bytes | None, *, inline_limit: int) -> None:
    """Raise InvalidRecordError naming the first broken rule of the upload contract."""
    for name in ("upload_id", "tenant_id", "user_id"):
        value = getattr(upload, name)
        if not value.strip():
            raise InvalidRecordError(f"missing required field {name} (empty)")
        if len(value) > MAX_ID_LENGTH:
            raise InvalidRecordError(f"{name} of {len(value)} characters is over the {MAX_ID_LENGTH} limit")
    if key is None:
        raise InvalidRecordError("record has no key (the contract keys uploads by upload_id)")
    if len(key) > MAX_KEY_BYTES:
        raise InvalidRecordError(f"record key of {len(key)} bytes is over the {MAX_KEY_BYTES}-byte limit")
    mime = _media_type(upload.content_type) if upload.content_type else None
    if upload.media_type is MediaType.TEXT:
        if not upload.text:
            raise InvalidRecordError("missing required field text for a TEXT upload")
        return
    if upload.media_bytes is None and not upload.media_url:
        raise InvalidRecordError(
            f"missing required field media_url or media_bytes for a {upload.media_type} upload"
        )
    if upload.media_bytes is not None and len(upload.media_bytes) > inline_limit:
        raise InvalidRecordError(
            f"inline media of {len(upload.media_bytes)} bytes is over the {inline_limit}-byte limit"
            " (send a media_url)"
        )
    if upload.media_bytes is None and upload.media_url:
        _check_url(upload.media_url)
    if mime is not None:
        supported = SUPPORTED_CONTENT_TYPES[upload.media_type]
        if mime not in supported:
            raise InvalidRecordError(
                f"unsupported media type {mime} for a {upload.media_type} upload"
                f" (supported: {', '.join(sorted(supported))})"
            )


def normalized_content_type(content_type: str | None) -> str | None:
    """The lowercase ``type/subtype`` of a well-formed content type (no parameters), the only form
    to put in an outgoing header; None when there is none or it is malformed."""
    if not content_type:
        return None
    try:
        return _media_type(content_type)
    except InvalidRecordError:
        return None


def _media_type(content_type: str) -> str:
    """``type/subtype`` in lowercase, or InvalidRecordError quoting at most a short, escaped prefix."""
    if len(content_type) > MAX_CONTENT_TYPE_LENGTH:
        raise InvalidRecordError(
            f"malformed content_type: over {MAX_CONTENT_TYPE_LENGTH} characters"
            f" (starts {content_type[:_SHOWN_PREFIX]!a})"
        )
    match = _MEDIA_TYPE.fullmatch(content_type.strip(" \t"))
    if match is None:
        shown = ascii(content_type[:_SHOWN_PREFIX]) + ("…" if len(content_type) > _SHOWN_PREFIX else "")
        raise InvalidRecordError(f"malformed content_type {shown} (expected type/subtype[; name=value])")
    return f"{match['type']}/{match['subtype']}".lower()


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise InvalidRecordError("malformed media_url") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRecordError(
            f"malformed media_url: scheme must be http or https, not {parts.scheme or 'none'!r}"
        )
    if not parts.hostname or any(c.isspace() for c in url):
        raise InvalidRecordError("malformed media_url: no host or whitespace in it")
