"""The input contract beyond what Avro enforces (pure): an upload that breaks it is a dead letter.

A tenant id scopes the similarity index and the policy: it must match ``TENANT_ID`` (1 to
``MAX_TENANT_LENGTH`` ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
digit), so no tenant id can contain a separator or quote of any encoding it is stored in.

A content type is producer input that ends up in outgoing request headers, so it must be an
RFC 9110 media type (``type/subtype`` tokens, ``;``-separated ``name=token`` or quoted-string
parameters, printable ASCII only, at most ``MAX_CONTENT_TYPE_LENGTH`` characters) before anything
else looks at it; code that sends it uses ``normalized_content_type`` (``type/subtype`` only).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from consumer.core.records import MediaType, ReviewDecision, UploadDeleted, UploadEvent
from consumer.errors import InvalidRecordError

__all__ = [
    "MAX_CONTENT_TYPE_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_KEY_BYTES",
    "MAX_NOTE_LENGTH",
    "MAX_TENANT_LENGTH",
    "SUPPORTED_CONTENT_TYPES",
    "TENANT_ID",
    "check_record_size",
    "check_tenant_id",
    "normalized_content_type",
    "validate_deleted",
    "validate_review",
    "validate_upload",
]

# Ids travel on every verdict and in headers: long ones would make outputs the broker refuses.
MAX_ID_LENGTH = 256
MAX_KEY_BYTES = 1024
MAX_TENANT_LENGTH = 128
TENANT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_TENANT_LENGTH - 1}}}")
MAX_NOTE_LENGTH = 1000  # a review decision's note and reviewer, kept in the similarity index

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
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # nosec B105  # an RFC 9110 token's characters, not a credential
_QUOTED = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
_MEDIA_TYPE = re.compile(
    rf"(?P<type>{_TOKEN})/(?P<subtype>{_TOKEN})(?:[ \t]*;(?:[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*"
)
_SHOWN_PREFIX = 24


def check_record_size(size: int, limit: int) -> None:
    """``size``: the record's key, value and header bytes together."""
    if size > limit:
        raise InvalidRecordError(f"record of {size} bytes is over the {limit}-byte limit")


def check_tenant_id(tenant_id: str) -> None:
    """InvalidRecordError unless ``tenant_id`` is in the tenant-id grammar (``TENANT_ID``)."""
    if TENANT_ID.fullmatch(tenant_id) is None:
        if not tenant_id:
            raise InvalidRecordError("missing required field tenant_id (empty)")
        shown = ascii(tenant_id[:_SHOWN_PREFIX]) + ("…" if len(tenant_id) > _SHOWN_PREFIX else "")
        raise InvalidRecordError(
            f"malformed tenant_id {shown}"
            f" (1-{MAX_TENANT_LENGTH} of A-Z a-z 0-9 . _ -, first a letter or digit)"
        )


def _check_ids(record: object, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        if not value.strip():
            raise InvalidRecordError(f"missing required field {name} (empty)")
        if len(value) > MAX_ID_LENGTH:
            raise InvalidRecordError(f"{name} of {len(value)} characters is over the {MAX_ID_LENGTH} limit")


def _check_media(media_url: str | None, media_bytes: bytes | None, inline_limit: int) -> None:
    if media_bytes is not None and len(media_bytes) > inline_limit:
        raise InvalidRecordError(
            f"inline media of {len(media_bytes)} bytes is over the {inline_limit}-byte limit"
            " (send a media_url)"
        )
    if media_bytes is None and media_url:
        _check_url(media_url)


def validate_review(review: ReviewDecision, *, inline_limit: int) -> None:
    """The review-decision contract: ids, the tenant grammar, bounded note and reviewer, media as
    for an upload. InvalidRecordError naming the first broken rule."""
    _check_ids(review, "review_id", "upload_id")
    check_tenant_id(review.tenant_id)
    for name in ("note", "reviewer"):
        value = getattr(review, name)
        if value is not None and len(value) > MAX_NOTE_LENGTH:
            raise InvalidRecordError(f"{name} of {len(value)} characters is over the {MAX_NOTE_LENGTH} limit")
    _check_media(review.media_url, review.media_bytes, inline_limit)


def validate_deleted(deleted: UploadDeleted, *, inline_limit: int) -> None:
    """The upload-deleted contract: ids, the tenant grammar, media as for an upload."""
    _check_ids(deleted, "upload_id")
    check_tenant_id(deleted.tenant_id)
    if deleted.reason is not None and len(deleted.reason) > MAX_NOTE_LENGTH:
        raise InvalidRecordError(
            f"reason of {len(deleted.reason)} characters is over the {MAX_NOTE_LENGTH} limit"
        )
    _check_media(deleted.media_url, deleted.media_bytes, inline_limit)


def validate_upload(upload: UploadEvent, key: bytes | None, *, inline_limit: int) -> None:
    """Raise InvalidRecordError naming the first broken rule of the upload contract."""
    _check_ids(upload, "upload_id", "user_id")
    check_tenant_id(upload.tenant_id)
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
    _check_media(upload.media_url, upload.media_bytes, inline_limit)
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
