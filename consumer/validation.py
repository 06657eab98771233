"""The input contract beyond what Avro enforces (pure): an upload that breaks it is a dead letter."""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import InvalidRecordError
from .records import MediaType, UploadEvent

__all__ = ["SUPPORTED_CONTENT_TYPES", "check_record_size", "validate_upload"]

# What the providers accept (Hive: jpg, png, gif, webp images; mp4 and mov videos).
SUPPORTED_CONTENT_TYPES: dict[MediaType, frozenset[str]] = {
    MediaType.IMAGE: frozenset(
        {"image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif", "image/bmp"}
    ),
    MediaType.GIF: frozenset({"image/gif"}),
    MediaType.VIDEO: frozenset({"video/mp4", "video/quicktime"}),
    MediaType.TEXT: frozenset({"text/plain"}),
}


def check_record_size(size: int, limit: int) -> None:
    """``size``: the record's key and value bytes together."""
    if size > limit:
        raise InvalidRecordError(f"record of {size} bytes is over the {limit}-byte limit")


def validate_upload(upload: UploadEvent, key: bytes | None, *, inline_limit: int) -> None:
    """Raise InvalidRecordError naming the first broken rule of the upload contract."""
    for name in ("upload_id", "tenant_id", "user_id"):
        if not getattr(upload, name).strip():
            raise InvalidRecordError(f"missing required field {name} (empty)")
    if key is None:
        raise InvalidRecordError("record has no key (the contract keys uploads by upload_id)")
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
    if upload.content_type:
        mime = upload.content_type.split(";", 1)[0].strip().lower()
        supported = SUPPORTED_CONTENT_TYPES[upload.media_type]
        if mime not in supported:
            raise InvalidRecordError(
                f"unsupported media type {mime} for a {upload.media_type} upload"
                f" (supported: {', '.join(sorted(supported))})"
            )


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
