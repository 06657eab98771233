"""The HTTP client every provider call uses: httpx's request and response types on an httpx
transport, without the per-call client machinery (auth flows, redirect loop, cookie jar, URL
merging) that provider calls never need.

The transport is chosen by measurement (``processing.http_transport``; ``make bench`` and the
README have the figures): ``lean`` (default, ``providers.transport.LeanTransport``), ``aiohttp``
(the ``httpx-aiohttp`` transport) or ``httpx`` (httpx's own). Unit tests hand in
``httpx.MockTransport``; OpenTelemetry's httpx instrumentation wraps a transport the same way.
"""

from __future__ import annotations

import json as jsonlib
import secrets
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

__all__ = ["Files", "HttpClient", "encode_body", "make_http_client"]

Files = Mapping[str, tuple[str, bytes, str]]
_BOUNDARY = secrets.token_hex(16)
_MULTIPART = f"multipart/form-data; boundary={_BOUNDARY}"


def _quote(value: str) -> bytes:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").encode()


def encode_body(
    *,
    content: bytes | str | None = None,
    json: Any = None,
    data: Mapping[str, str] | None = None,
    files: Files | None = None,
) -> tuple[bytes, str | None]:
    """The request body and its content type: multipart when there are files, a urlencoded form
    for fields alone, JSON, or raw content."""
    if files:
        b = _BOUNDARY.encode()
        parts: list[bytes] = []
        for name, value in (data or {}).items():
            parts += [b"--", b, b'\r\nContent-Disposition: form-data; name="', _quote(name), b'"\r\n\r\n']
            parts += [value.encode(), b"\r\n"]
        for name, (filename, payload, ctype) in files.items():
            parts += [b"--", b, b'\r\nContent-Disposition: form-data; name="', _quote(name)]
            parts += [b'"; filename="', _quote(filename), b'"\r\nContent-Type: ', ctype.encode(), b"\r\n\r\n"]
            parts += [payload, b"\r\n"]
        parts += [b"--", b, b"--\r\n"]
        return b"".join(parts), _MULTIPART
    if data is not None:
        return urlencode(data).encode(), "application/x-www-form-urlencoded"
    if json is not None:
        return jsonlib.dumps(json).encode(), "application/json"
    if isinstance(content, str):
        return content.encode(), None
    return content or b"", None


class _Borrowed(httpx.AsyncBaseTransport):
    """The shared transport, for an ``httpx.AsyncClient`` that must not close it."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class HttpClient:
    """``request()`` builds one ``httpx.Request`` and hands it straight to the transport.
    ``client`` is a full ``httpx.AsyncClient`` on the same connections, for the rare calls that
    want streaming or redirects (media downloads)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout_s: float = 10.0) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.client = httpx.AsyncClient(transport=_Borrowed(transport), timeout=timeout_s)
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 1024:  # task ids make polling URLs unique: keep the cache bounded
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Files | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - handed to the transport per phase
    ) -> httpx.Response:
        body, ctype = encode_body(content=content, json=json, data=data, files=files)
        all_headers = dict(headers or {})
        if ctype is not None:
            all_headers["content-type"] = ctype
        t = self.timeout_s if timeout is None else timeout
        request = httpx.Request(
            method,
            self._url(url),
            headers=all_headers,
            content=body,
            extensions={"timeout": {"connect": t, "read": t, "write": t, "pool": t}},
        )
        response = await self.transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.transport.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def make_http_client(
    transport: Literal["lean", "aiohttp", "httpx"], max_connections: int, timeout_s: float = 10.0
) -> HttpClient:
    if transport == "lean":
        from .providers.transport import LeanTransport

        return HttpClient(LeanTransport(max_connections), timeout_s)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return HttpClient(AiohttpTransport(limits=limits), timeout_s)
    return HttpClient(httpx.AsyncHTTPTransport(limits=limits), timeout_s)
