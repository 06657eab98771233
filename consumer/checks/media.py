"""What a check sends to a provider (inline bytes or a URL), the hash the service computed of it,
and the download of URL media when a provider needs the bytes.

Nothing the sender asserts is trusted: the result cache is keyed by the SHA-256 computed here from
the bytes that are sent, and a declared ``content_sha256`` that differs from them makes the upload
an ``InvalidRecordError``. Downloads follow at most ``max_redirects`` redirects, each hop checked
against the egress policy, with the body bounded while it streams. Each hop goes out as provider
calls do (``providers.http.ProviderEndpoint``, provider and check ``media``): bounded retries of
transient failures (connection errors, timeouts, 5xx), a concurrency bound, request metrics and a
client span. What retrying cannot change (404, the egress policy, the size bound) is not retried.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin, urlsplit

import httpx

from consumer.checks.providers.http import ProviderEndpoint, ProviderGate
from consumer.checks.retry import RetryPolicy
from consumer.core.limits import AimdLimit, CircuitBreaker
from consumer.core.records import MediaType, UploadEvent
from consumer.core.validation import normalized_content_type
from consumer.errors import (
    EgressRefused,
    InvalidRecordError,
    MediaTooLarge,
    PermanentError,
    ResponseTooLarge,
    TransientError,
)
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import Answer, HttpClient

__all__ = [
    "DOWNLOAD_CONCURRENCY",
    "Media",
    "MediaFetcher",
    "MediaPolicy",
    "content_key",
    "download_gate",
    "media_of",
    "verify_declared_hash",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
DOWNLOAD_CONCURRENCY = 32  # downloads at once per pipeline (the media client's pool holds as many)


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes | None = None
    url: str | None = None
    content_type: str = "application/octet-stream"
    filename: str = "upload"
    _digest: str | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str | None:
        """The SHA-256 of ``data``, computed here (never taken from the sender) on first use only:
        most uploads never need it (no declared hash, cache off)."""
        if self._digest is None and self.data is not None:
            object.__setattr__(self, "_digest", hashlib.sha256(self.data).hexdigest())
        return self._digest

    def form(self) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
        """Form fields and files for a Hive multipart request."""
        if self.data is not None:
            return {}, {"media": (self.filename, self.data, self.content_type)}
        assert self.url is not None
        return {"url": self.url}, {}

    def with_data(self, data: bytes) -> Media:
        return replace(self, data=data, _digest=None)


def media_of(upload: UploadEvent) -> Media:
    ctype = normalized_content_type(upload.content_type) or "application/octet-stream"
    data = upload.media_bytes
    if data:
        return Media(data, None, ctype, upload.upload_id)
    if upload.media_url:
        return Media(None, upload.media_url, ctype, upload.upload_id)
    raise PermanentError(
        f"{upload.media_type} upload has neither media_bytes nor media_url", check="pipeline"
    )


def verify_declared_hash(upload: UploadEvent, media: Media) -> None:
    """A declared ``content_sha256`` must be the hash of the bytes we have (when we have them)."""
    declared = upload.content_sha256
    if declared is None or media.sha256 is None:
        return
    if declared.strip().lower() != media.sha256:
        raise InvalidRecordError(
            f"declared content_sha256 {declared[:64]!r} is not the SHA-256 of the media bytes"
            f" ({media.sha256})"
        )


def content_key(upload: UploadEvent, media: Media | None) -> str | None:
    """The result-cache key: the hash this service computed of what it sends. URL media that was
    not downloaded has none (the provider fetches it; nothing here knows its bytes)."""
    if upload.media_type is MediaType.TEXT:
        return None if upload.text is None else "text:" + hashlib.sha256(upload.text.encode()).hexdigest()
    return None if media is None else media.sha256


def download_gate(concurrency: int = DOWNLOAD_CONCURRENCY) -> ProviderGate:
    """Downloads' etiquette: at most ``concurrency`` at once, a fixed bound with no circuit breaker.
    Media hosts are the uploaders' choice: one host's timeouts must not shrink the bound (AIMD) nor
    its failures open a circuit that would hold every other upload's media."""
    fixed = float(concurrency)
    return ProviderGate("media", AimdLimit(fixed, fixed, fixed), None, CircuitBreaker(sys.maxsize))


def _hop(answer: Answer) -> Answer:
    """A 200 or a redirect is the fetcher's to read; 404 and 410 are final; any other error status
    is transient (retried)."""
    status = answer.status_code
    if status in (404, 410):
        raise PermanentError(f"media URL answered HTTP {status}", check="media", status=status)
    if status >= 400:
        raise TransientError(f"media URL answered HTTP {status}", check="media", status=status)
    return answer


class MediaFetcher:
    """Downloads URL media when a provider needs the bytes (Huawei search, ``media_mode: upload``).
    ``retry``: the attempts of each hop (default ``RetryPolicy()``); ``gate``: the concurrency
    bound (default a ``download_gate()`` of its own)."""

    def __init__(
        self,
        http: HttpClient,
        max_bytes: int = 20_000_000,
        timeout_s: float = 30.0,
        *,
        egress: EgressPolicy | None = None,
        max_redirects: int = 3,
        retry: RetryPolicy | None = None,
        gate: ProviderGate | None = None,
    ) -> None:
        self._max = max_bytes
        self._egress = egress or EgressPolicy()
        self._max_redirects = max_redirects
        self._endpoint = ProviderEndpoint(
            http,
            check="media",
            provider="media",
            retry=retry or RetryPolicy(),
            gate=gate or download_gate(),
            timeout_s=timeout_s,
            refusals=(EgressRefused, ResponseTooLarge, httpx.UnsupportedProtocol),
        )

    async def bytes_of(self, media: Media) -> bytes:
        if media.data is not None:
            return media.data
        assert media.url is not None
        url = media.url
        for _ in range(self._max_redirects + 1):
            answer = await self._get(url)
            if answer.status_code in _REDIRECTS:
                location = answer.headers.get("location")
                if not location:
                    raise PermanentError("media URL redirected without a location", check="media")
                url = urljoin(url, location)
                continue
            if answer.status_code != 200:
                raise PermanentError(f"media URL answered HTTP {answer.status_code}", check="media")
            if not answer.content:
                raise PermanentError("media URL answered with an empty body", check="media")
            return answer.content
        raise PermanentError(f"media URL redirected more than {self._max_redirects} times", check="media")

    async def _get(self, url: str) -> Answer:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise PermanentError("malformed media URL", check="media") from None
        if parts.scheme not in ("http", "https") or not host:
            raise PermanentError("media URL is not an http(s) URL with a host", check="media")
        try:
            self._egress.check_host(host)
            answer, _ = await self._endpoint.call("GET", url, _hop, max_bytes=self._max)
            return answer
        except EgressRefused as exc:
            raise PermanentError(f"media URL refused by the egress policy: {exc}", check="media") from None
        except ResponseTooLarge:
            raise MediaTooLarge(f"media larger than {self._max} bytes", check="media") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise PermanentError("malformed media URL", check="media") from None


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """How media travels to providers: ``auto`` keeps URLs as URLs unless a provider needs the bytes
    (``needs_bytes``); ``upload`` downloads them and uploads the bytes (for media hosts the provider
    cannot reach) unless they exceed the download bound, in which case the provider fetches them."""

    mode: str = "auto"
    fetcher: MediaFetcher | None = None
    needs_bytes: bool = False

    async def prepare(self, media: Media) -> Media:
        if media.data is not None or self.fetcher is None:
            return media
        if self.mode == "upload":
            try:
                return media.with_data(await self.fetcher.bytes_of(media))
            except MediaTooLarge:
                return media  # too big to upload: let the provider fetch it
        if self.needs_bytes:
            return media.with_data(await self.fetcher.bytes_of(media))
        return media
