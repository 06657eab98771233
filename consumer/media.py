"""What a check sends to a provider: inline bytes or a URL (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import httpx

from .errors import PermanentError, TransientError
from .httpclient import HttpClient
from .records import UploadEvent

__all__ = ["Media", "MediaFetcher", "MediaPolicy", "content_key", "media_of"]


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
        return Media(
            url=upload.media_url,
            content_type=upload.content_type or "application/octet-stream",
            filename=upload.upload_id,
        )
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


class MediaFetcher:
    """Downloads URL media when a provider needs the bytes (Huawei search, ``media_mode: upload``)."""

    def __init__(self, http: HttpClient, max_bytes: int = 20_000_000, timeout_s: float = 10.0) -> None:
        self._http = http
        self._max = max_bytes
        self._timeout = timeout_s

    async def bytes_of(self, media: Media) -> bytes:
        if media.data is not None:
            return media.data
        assert media.url is not None
        try:
            async with self._http.client.stream("GET", media.url, timeout=self._timeout) as resp:
                if resp.status_code in (404, 410):
                    raise PermanentError(f"media URL answered HTTP {resp.status_code}", check="media")
                if resp.status_code >= 400:
                    raise TransientError(f"media URL answered HTTP {resp.status_code}", check="media")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > self._max:
                        raise PermanentError(f"media larger than {self._max} bytes", check="media")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.InvalidURL:
            raise PermanentError("malformed media URL", check="media") from None
        except httpx.UnsupportedProtocol:
            raise PermanentError("media URL scheme is not http(s)", check="media") from None
        except httpx.TransportError as exc:
            raise TransientError(f"cannot download media ({type(exc).__name__})", check="media") from None


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """How media travels to Hive: ``auto`` keeps URLs as URLs; ``upload`` downloads them and uploads
    the bytes (for media hosts the provider cannot reach) unless they exceed ``max_upload_bytes``."""

    mode: str = "auto"
    fetcher: MediaFetcher | None = None

    async def prepare(self, media: Media) -> Media:
        if self.mode == "upload" and media.data is None and self.fetcher is not None:
            try:
                data = await self.fetcher.bytes_of(media)
            except PermanentError as exc:
                if "larger than" in str(exc):
                    return media  # too big to upload: let the provider fetch it
                raise
            return Media(data=data, content_type=media.content_type, filename=media.filename)
        return media
