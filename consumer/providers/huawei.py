"""Huawei Cloud ImageSearch as the similarity index: search, add, delete, check, modify tags.

Searches send the image as base64 ``file`` (``path`` names an image already in the library, so a
new upload's URL media is downloaded first). The tenant travels as a tag and every search is
scoped to it. Images are shrunk to the API's 2048-pixel long-side limit before sending.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError
from pydantic import SecretStr

from ..errors import PermanentError, RateLimitedError, TransientError
from ..httpclient import HttpClient
from ..media import Media, MediaFetcher
from ..records import SimilarityMatch
from ..retry import RetryPolicy, retrying
from . import Checked
from .http import ProviderGate, count_retry, send

__all__ = ["HuaweiImageSearch", "HuaweiTransport", "check_huawei_response", "fit_for_search"]

PROVIDER = "huawei"
TRANSIENT_CODES = {"IS.0012"}  # processing timed out
MAX_SIDE = 2048
MIN_SIDE = 100


class HuaweiTransport:
    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        project_id: str,
        instance: str,
        token: SecretStr,
        retry: RetryPolicy,
        timeout_s: float = 10.0,
        check: str = "similarity",
        gate: ProviderGate | None = None,
    ) -> None:
        self._http = http
        self._root = f"{base_url.rstrip('/')}/v1/{project_id}/{instance}/image"
        self._token = token
        self._retry = retry
        self._timeout = timeout_s
        self.check = check
        self._gate = gate

    async def call(self, method: str, suffix: str, body: Mapping[str, Any]) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            headers = {"X-Auth-Token": self._token.get_secret_value(), "content-type": "application/json"}
            resp = await send(
                self._http,
                method,
                self._root + suffix,
                check=self.check,
                provider="ImageSearch",
                gate=self._gate,
                content=json.dumps(body),
                headers=headers,
                timeout=self._timeout,
            )
            return check_huawei_response(resp, self.check)

        body_out, _ = await retrying(
            self._retry, once, count_retry, lambda: self._gate is not None and self._gate.is_open
        )
        return body_out


def check_huawei_response(resp: httpx.Response, check: str) -> dict[str, Any]:
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error_code", ""))
    message = str(body.get("error_msg", resp.reason_phrase))[:300]
    if resp.status_code == 429:
        raise RateLimitedError(
            f"{check}: ImageSearch throttled (429): {code} {message}",
            check=check,
            retry_after=_float(resp.headers.get("retry-after")),
        )
    if resp.status_code >= 500 or code in TRANSIENT_CODES:
        raise TransientError(
            f"{check}: ImageSearch HTTP {resp.status_code} {code}: {message}",
            check=check,
            status=resp.status_code,
            code=code or None,
        )
    if resp.status_code != 200 or code:
        raise PermanentError(
            f"{check}: ImageSearch HTTP {resp.status_code} {code}: {message}",
            check=check,
            status=resp.status_code,
            code=code or None,
        )
    return body


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def fit_for_search(data: bytes) -> bytes:
    """The image as the API accepts it: JPEG/PNG/BMP, long side ≤ 2048 (shrunk if needed).

    Too-small images are left alone: the provider's IS.0008 names the problem better than we could.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        return data  # let the provider reject it with its own error code
    if max(image.size) <= MAX_SIDE and image.format in ("JPEG", "PNG", "BMP"):
        return data
    image.load()
    scale = min(1.0, MAX_SIDE / max(image.size))
    resized = image.convert("RGB").resize(
        (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    )
    out = io.BytesIO()
    resized.save(out, "JPEG", quality=90)
    return out.getvalue()


class HuaweiImageSearch:
    """The SimilarityIndex protocol over ImageSearch; the index id (``path``) names the upload."""

    def __init__(self, transport: HuaweiTransport, fetcher: MediaFetcher, *, limit: int = 10) -> None:
        self._t = transport
        self._fetch = fetcher
        self._limit = limit

    async def _file(self, media: Media) -> str:
        return base64.b64encode(fit_for_search(await self._fetch.bytes_of(media))).decode()

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        body = await self._t.call(
            "POST",
            "/search",
            {
                "file": await self._file(media),
                "limit": self._limit,
                "offset": 0,
                "tags": {"tenant": tenant},
            },
        )
        matches = [
            SimilarityMatch(
                match_id=str(r.get("path")),
                score=float(r.get("sim", 0.0)),
                metadata=_metadata(r.get("tags")),
                url=r.get("path"),
            )
            for r in body.get("result") or []
        ]
        return Checked(matches, PROVIDER)

    async def add(self, media: Media, tenant: str, metadata: str, path: str | None = None) -> str:
        index_path = path or media.url or f"moderation://{tenant}/{media.filename}"
        await self._t.call(
            "POST",
            "",
            {
                "path": index_path,
                "file": await self._file(media),
                "tags": {"tenant": tenant, "note": metadata[:200]},
            },
        )
        return index_path

    async def remove(self, media: Media, tenant: str, path: str | None = None) -> str | None:
        index_path = path or media.url or f"moderation://{tenant}/{media.filename}"
        try:
            await self._t.call("DELETE", "", {"path": index_path})
        except PermanentError as exc:
            if exc.code == "IS.0010":  # not in the library: nothing to remove
                return None
            raise
        return index_path

    async def exists(self, path: str) -> bool:
        body = await self._t.call("POST", "/check", {"path": path})
        result = body.get("result")
        return bool(result.get("exist")) if isinstance(result, dict) else False

    async def set_tags(self, path: str, tags: Mapping[str, str]) -> None:
        await self._t.call("PUT", "", {"path": path, "tags": dict(tags)})


def _metadata(tags: Any) -> str | None:
    if isinstance(tags, dict):
        note = tags.get("note")
        return None if note is None else str(note)
    return None
