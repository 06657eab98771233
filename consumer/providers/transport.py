"""A lean HTTP/1.1 keep-alive transport for httpx: ``httpx.Request`` in, ``httpx.Response`` out.

Provider calls are small requests with small JSON answers, thousands per second. httpx's default
transport (httpcore) and even the aiohttp transport spend most of a call's client CPU in
per-request machinery (pool scans, header multidicts, tracing hooks, stream wrappers). This one is
an ``asyncio.Protocol`` per connection, a pool of idle connections per origin, one timer per
exchange and a byte-level parser; everything above it (``httpx.Request``/``Response``, headers,
JSON, ``MockTransport`` in unit tests, OpenTelemetry's transport wrapper) is plain httpx.

It speaks what providers answer: Content-Length, chunked and read-until-close bodies, keep-alive
and ``Connection: close``, 1xx interim answers, HEAD/204/304 without bodies, TLS for https.
A request that fails on a reused idle connection before any answer byte arrives (the server closed
it meanwhile) is sent once more on a fresh connection; anything else surfaces as httpx's own
exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``RemoteProtocolError``,
``PoolTimeout``), which the provider layer maps to transient errors.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any, cast

import httpx

__all__ = ["LeanTransport"]

_Origin = tuple[bytes, str, int]
_NO_BODY_STATUS = frozenset({204, 304})


class _ClosedBeforeAnswer(httpx.RemoteProtocolError):
    """The server closed the connection before any byte of the answer (a stale keep-alive)."""


class _Exchange:
    """The answer being read on one connection."""

    __slots__ = ("body", "chunked", "headers", "keep_alive", "length", "started", "status", "waiter")

    def __init__(self, waiter: asyncio.Future[None]) -> None:
        self.waiter = waiter
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.length: int | None = None  # None: until close (unless chunked)
        self.chunked = False
        self.keep_alive = True
        self.started = False  # any answer byte arrived


class _Connection(asyncio.Protocol):
    __slots__ = ("_buf", "_exchange", "_head_only", "closed", "idle_since", "origin", "transport", "used")

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._exchange: _Exchange | None = None
        self._head_only = False
        self.closed = False
        self.used = False
        self.idle_since = 0.0

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        ex = self._exchange
        if ex is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        ex.started = True
        self._buf += data
        try:
            self._parse(ex)
        except httpx.RemoteProtocolError as exc:
            self._finish(ex, exc)
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self._exchange
        if ex is None:
            return
        if ex.status and ex.length is None and not ex.chunked:
            ex.keep_alive = False
            ex.body.append(bytes(self._buf))
            self._buf.clear()
            self._finish(ex, None)  # read-until-close body: the close ends it
            return
        if not ex.started:
            self._finish(ex, _ClosedBeforeAnswer("server closed the connection before answering"))
        else:
            self._finish(ex, httpx.RemoteProtocolError("server closed the connection mid-answer"))

    # --- exchange --------------------------------------------------------------------------------
    def send(self, data: bytes, head_only: bool, waiter: asyncio.Future[None]) -> _Exchange:
        assert self.transport is not None
        self.used = True
        self._head_only = head_only
        ex = self._exchange = _Exchange(waiter)
        self.transport.write(data)
        return ex

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self, ex: _Exchange, exc: BaseException | None) -> None:
        self._exchange = None
        if not ex.waiter.done():
            if exc is None:
                ex.waiter.set_result(None)
            else:
                ex.waiter.set_exception(exc)

    def _parse(self, ex: _Exchange) -> None:
        buf = self._buf
        while not ex.status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    raise httpx.RemoteProtocolError("answer headers larger than 64 KiB")
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            status_line = lines[0].split(b" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:60]!r}")
            try:
                status = int(status_line[1])
            except ValueError:
                raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:60]!r}") from None
            if 100 <= status < 200:
                continue  # interim answer (100 Continue, 103 Early Hints)
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    raise httpx.RemoteProtocolError("malformed header line")
                name = name.strip().lower()
                value = value.strip()
                headers.append((name, value))
                if name == b"content-length":
                    ex.length = int(value)
                elif name == b"transfer-encoding":
                    ex.chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    ex.keep_alive = b"close" not in value.lower()
            if status_line[0] == b"HTTP/1.0" and not any(
                n == b"connection" and b"keep-alive" in v.lower() for n, v in headers
            ):
                ex.keep_alive = False
            ex.status, ex.headers = status, headers
            if self._head_only or status in _NO_BODY_STATUS:
                ex.length, ex.chunked = 0, False
        if ex.chunked:
            self._parse_chunks(ex)
        elif ex.length is not None and len(buf) >= ex.length:
            ex.body.append(bytes(buf[: ex.length]))
            del buf[: ex.length]
            self._done(ex)
        # else: read until close (connection_lost completes it)

    def _parse_chunks(self, ex: _Exchange) -> None:
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                return
            try:
                size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
            except ValueError:
                raise httpx.RemoteProtocolError("malformed chunk size") from None
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)  # the last chunk, trailers, a blank line
                if trailer_end < 0:
                    return
                del buf[: trailer_end + 4]
                self._done(ex)
                return
            if len(buf) < eol + 2 + size + 2:
                return
            ex.body.append(bytes(buf[eol + 2 : eol + 2 + size]))
            del buf[: eol + 2 + size + 2]

    def _done(self, ex: _Exchange) -> None:
        if self._buf:
            ex.keep_alive = False  # more bytes than the answer: do not reuse
        self._finish(ex, None)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive; at most ``max_connections`` open per transport (callers wait for
    a free one up to the pool timeout); idle connections older than ``keepalive_expiry`` are closed
    rather than reused."""

    def __init__(
        self,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        head = b"".join(
            (
                request.method.encode(),
                b" ",
                url.raw_path,
                b" HTTP/1.1\r\n",
                *(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw),
                b"\r\n",
            )
        )
        payload = head + body
        head_only = request.method == "HEAD"
        for attempt in (1, 2):
            conn = await self._acquire(origin, timeouts)
            reused = conn.used
            try:
                ex = await self._exchange(conn, payload, head_only, timeouts.get("read"))
            except _ClosedBeforeAnswer:
                self._discard(conn)
                if attempt == 1 and reused:
                    continue  # a stale keep-alive connection: once more on a fresh one
                raise
            except BaseException:
                self._discard(conn)
                raise
            if ex.keep_alive and not conn.closed:
                self._release(conn)
            else:
                self._discard(conn)
            content = ex.body[0] if len(ex.body) == 1 else b"".join(ex.body)
            return httpx.Response(
                ex.status,
                headers=ex.headers,
                content=content,
                request=request,
                extensions={"http_version": b"HTTP/1.1"},
            )
        raise AssertionError("unreachable")

    async def _exchange(
        self, conn: _Connection, payload: bytes, head_only: bool, read_timeout: float | None
    ) -> _Exchange:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        ex = conn.send(payload, head_only, waiter)
        timer = None if read_timeout is None else loop.call_later(read_timeout, _expire, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
        return ex

    async def _acquire(self, origin: _Origin, timeouts: dict[str, float | None]) -> _Connection:
        if self._closed:
            raise httpx.ConnectError("transport is closed")
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._expiry:
                return conn
            self._discard(conn)
        while self._open >= self._max:
            if not self._evict_idle():
                await self._wait_for_slot(timeouts.get("pool"))
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
                self._discard(conn)
        self._open += 1
        try:
            return await self._connect(origin, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    async def _wait_for_slot(self, within_s: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within_s):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection within the pool timeout") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _connect(self, origin: _Origin, within_s: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = None
        if scheme == b"https":
            context = self._ssl = self._ssl or httpx.create_ssl_context()
        try:
            async with asyncio.timeout(within_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {within_s}s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn

    def _evict_idle(self) -> bool:
        """At the limit, an idle connection to another origin makes room (closed, not reused)."""
        for conns in self._idle.values():
            if conns:
                self._discard(conns.popleft())
                return True
        return False

    def _release(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, deque()).append(conn)
        if self._waiters:
            self._wake()  # a waiter for this origin reuses it; one for another evicts it

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(httpx.ConnectError("transport is closed"))
        self._waiters.clear()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("no answer within the read timeout"))
