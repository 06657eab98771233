"""The HTTP client every outgoing call uses, on a well-kept library: ``request()`` sends one request
and returns an ``Answer`` (status, headers, body) whose body was read with a bound.

Two backends, one interface:

- ``AiohttpClient`` (production): aiohttp's client (llhttp parser, keep-alive pool). The measured
  options and their CPU per call are in docs/benchmarks.md (``python -m bench.http_clients``): aiohttp
  directly costs less than half of httpx's client on the same transport, so provider calls use it
  directly. Media downloads get their own instance whose resolver applies the egress policy.
- ``HttpxClient``: any ``httpx.AsyncBaseTransport`` (``httpx.MockTransport`` in unit tests, or
  httpx's own transport).

Every body is bounded while it streams (``max_bytes``): a ``Content-Length`` over the bound is
refused before any body byte is read, an endless or lying body is cut at the bound
(``ResponseTooLarge``). No redirect is followed here; callers that want them follow them
themselves, checking each hop. Bodies are never decompressed (nothing asks for compression), so a
small compressed body cannot expand past the bound. Failures are httpx's exception types, whatever
the backend, so callers map one vocabulary.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson

from consumer.errors import EgressRefused, ResponseTooLarge
from consumer.transports.egress import EgressPolicy, EgressResolver

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "AiohttpClient",
    "Answer",
    "Files",
    "HttpClient",
    "HttpxClient",
]

Files = Mapping[str, tuple[str, bytes, str]]
DEFAULT_MAX_ANSWER_BYTES = 4 << 20  # provider answers are JSON of a few KB; a video's a few hundred
_BOUNDARY = secrets.token_hex(16)  # one per process: aiohttp would draw a uuid4 per request


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read whole (within its bound). ``headers`` look up case-insensitively."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason_phrase: str = ""

    def json(self) -> Any:
        """The body as JSON (``orjson.JSONDecodeError``, a ValueError, when it is not)."""
        return orjson.loads(self.content)


@dataclass(frozen=True, slots=True)
class _Body:
    content: bytes | str | None
    json: Any
    data: Mapping[str, str] | None
    files: Files | None


def _aiohttp_body(body: _Body) -> Any:
    """What aiohttp sends: its own multipart writer and form encoder (quoting included)."""
    if body.files:
        writer = aiohttp.MultipartWriter("form-data", boundary=_BOUNDARY)
        for name, value in (body.data or {}).items():
            field = aiohttp.StringPayload(value)
            field.set_content_disposition("form-data", name=name)
            writer.append_payload(field)
        for name, (filename, payload, ctype) in body.files.items():
            part = aiohttp.BytesPayload(payload, content_type=ctype)
            part.set_content_disposition("form-data", name=name, filename=filename)
            writer.append_payload(part)
        return writer
    if body.data is not None:
        return aiohttp.FormData(dict(body.data))
    if body.json is not None:
        return aiohttp.JsonPayload(body.json, dumps=_dumps)
    return body.content or None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class HttpClient:
    """One request in, one bounded ``Answer`` out. Subclasses implement ``_send``."""

    def __init__(self, timeout_s: float = 10.0, max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes

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
        timeout: float | None = None,  # noqa: ASYNC109 - the whole exchange's bound
        max_bytes: int | None = None,
    ) -> Answer:
        """Send one request: multipart when there are ``files``, a urlencoded form for ``data``
        alone, JSON, or raw ``content``; the body is encoded by the backend's own library."""
        return await self._send(
            method,
            url,
            dict(headers or {}),
            _Body(content, json, data, files),
            self.timeout_s if timeout is None else timeout,
            self.max_answer_bytes if max_bytes is None else max_bytes,
        )

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: _Body, limit_s: float, max_bytes: int
    ) -> Answer:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _declared_length(value: str | None, max_bytes: int) -> int | None:
    """The Content-Length, refused before any body byte when over the bound."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise httpx.RemoteProtocolError("invalid Content-Length") from None
    if length > max_bytes:
        raise ResponseTooLarge(max_bytes, length)
    return length


class AiohttpClient(HttpClient):
    """aiohttp's client with a bounded pool; with an ``egress`` policy, only allowed addresses are
    resolved and connected to (media downloads)."""

    def __init__(
        self,
        max_connections: int = 100,
        timeout_s: float = 10.0,
        *,
        egress: EgressPolicy | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        super().__init__(timeout_s, max_answer_bytes)
        self._max_connections = max_connections
        self.egress = egress
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        resolver = EgressResolver(self.egress) if self.egress is not None else None
        connector = aiohttp.TCPConnector(limit=self._max_connections, resolver=resolver, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # providers set no cookies; media hosts get none
        )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(seconds)
        if found is None:
            found = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return found

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: _Body, limit_s: float, max_bytes: int
    ) -> Answer:
        session = self._session or self._open()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=_aiohttp_body(body),
                allow_redirects=False,
                timeout=self._timeout(limit_s),
            ) as resp:
                declared = _declared_length(resp.headers.get("content-length"), max_bytes)
                if declared is not None:
                    content = await resp.read()  # llhttp stops at the declared length
                else:
                    content = await _read_bounded(resp.content, max_bytes)
                return Answer(resp.status, resp.headers, content, resp.reason or "")
        except (httpx.TransportError, asyncio.CancelledError):
            raise
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete answer within {limit_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.__cause__, EgressRefused):
                raise EgressRefused(str(exc.__cause__)) from None
            raise httpx.ConnectError(f"cannot connect ({type(exc.os_error).__name__})") from None
        except aiohttp.InvalidURL:
            raise httpx.UnsupportedProtocol("invalid URL") from None
        except aiohttp.ClientResponseError as exc:  # a malformed answer (llhttp refused it)
            raise httpx.RemoteProtocolError(f"malformed answer: {exc.message[:200]}") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise httpx.ReadError(f"exchange failed ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_bounded(stream: aiohttp.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.readany():
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_httpx(response: httpx.Response, max_bytes: int) -> bytes:
    try:
        content = response.content  # a response built in memory (MockTransport) is read already
    except httpx.ResponseNotRead:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(max_bytes) from None
            chunks.append(chunk)
        return b"".join(chunks)
    if len(content) > max_bytes:
        raise ResponseTooLarge(max_bytes)
    return content


class HttpxClient(HttpClient):
    """Over any httpx transport: ``httpx.MockTransport`` in unit tests, httpx's own otherwise."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        timeout_s: float = 10.0,
        *,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        super().__init__(timeout_s, max_answer_bytes)
        self.transport = transport

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: _Body, limit_s: float, max_bytes: int
    ) -> Answer:
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=body.content,
            json=body.json,
            data=body.data,
            files=body.files,
            extensions={"timeout": {"connect": limit_s, "read": limit_s, "write": limit_s, "pool": limit_s}},
        )
        try:
            async with asyncio.timeout(limit_s):
                response = await self.transport.handle_async_request(request)
                try:
                    _declared_length(response.headers.get("content-length"), max_bytes)
                    content = await _read_httpx(response, max_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete answer within {limit_s:g}s") from None
        return Answer(response.status_code, response.headers, content, response.reason_phrase)

    async def aclose(self) -> None:
        await self.transport.aclose()
