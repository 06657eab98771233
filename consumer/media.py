"""What a check sends to a provider: inline bytes or a URL (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import PermanentError
from .records import UploadEvent

__all__ = ["Media", "content_key", "media_of"]


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes | None = None
    url: str | None = None
    content_type: str = "application/octet-stream"
    filename: str = "upload"

    def form(self) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
        """Form fields and files for a Hive multipart request."""
        if self.data is not None:
            return {}, {"media": (self.filename, self.data, self.content_type)}
        assert self.url is not None
        return {"url": self.url}, {}


def media_of(upload: UploadEvent) -> Media:
    if upload.media_bytes:
        return Media(
            data=upload.media_bytes,
            content_type=upload.content_type or "application/octet-stream",
            filename=upload.upload_id,
        )
    if upload.media_url:
        return Media(url=upload.media_url, content_type=upload.content_type or "application/octet-stream")
    raise PermanentError(
        f"{upload.media_type} upload has neither media_bytes nor media_url", check="pipeline"
    )


def content_key(upload: UploadEvent) -> str | None:
    """The result-cache key: the declared sha256, or the hash of inline bytes."""
    if upload.content_sha256:
        return upload.content_sha256.lower()
    if upload.media_bytes:
        return hashlib.sha256(upload.media_bytes).hexdigest()
    if upload.text is not None and upload.media_url is None:
        return hashlib.sha256(upload.text.encode()).hexdigest()
    return None
