"""Hostile mode: a second HTTP server, on 127.0.0.1 only, that attacks the client calling it.

Each path answers with one named misbehaviour (docs/simulator.md lists them): broken chunked framing,
endless or lying bodies, a body that drips, redirects to loopback or the cloud metadata address,
provider answers of the wrong shape, answers that echo the caller's credentials. Requests are
accepted by aiohttp (we never parse HTTP ourselves); the answers are written as raw bytes through the
request's writer, because no framework would produce them, and the connection is closed afterwards.
Streams end when the client leaves, the server stops, or :class:`HostileLimits` bounds (time, bytes)
are reached; writes wait for the transport to drain, so a connection holds at most a few hundred KiB.

The same wrong-shape and echo bodies back the ``wrong_shape`` and ``echo_credentials`` faults of the
normal simulator (:func:`fault_answer`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import StreamWriter
from aiohttp.http_exceptions import HttpProcessingError

from moderation_simulator.common import HOSTILE_FAULT_NAMES, STATE_KEY
from moderation_simulator.etiquette import Faults
from moderation_simulator.hive import task_body
from moderation_simulator.state import CSAM_HEADS, PROJECT_IDS, TEXT_HEADS, VISUAL_HEADS, Project

__all__ = [
    "HOST",
    "PATHS",
    "HostileLimits",
    "HostileServer",
    "HostileStats",
    "fault_answer",
    "hostile_fault_rates",
    "set_hostile_fault",
    "startup_hostile_faults",
]

HOST = "127.0.0.1"
PIECE = 64 * 1024
POLL_S = 0.05
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZEROS = bytes(PIECE)
_ENDLESS_CHUNK = b"%x\r\n" % PIECE + _ZEROS + b"\r\n"
_LOCATION_SAFE = "/?&=%:;,+@!$'()*~-._"


@dataclass(frozen=True, slots=True)
class HostileLimits:
    """Bounds of every answer, so a test that forgets a client cannot exhaust the machine."""

    stream_s: float = 60.0  # no connection is served longer (drains included)
    max_stream_bytes: int = 4 * 2**30  # endless bodies stop here
    drip_interval_s: float = 0.5
    slow_interval_s: float = 0.25  # the data after the ``-5`` chunk size
    giant_json_bytes: int = 50_000_000
    deep_levels: int = 100_000

    def __post_init__(self) -> None:
        if self.giant_json_bytes < 4096:
            raise ValueError("giant_json_bytes must be at least 4096")
        if min(self.stream_s, self.drip_interval_s, self.slow_interval_s) <= 0 or self.deep_levels < 1:
            raise ValueError("hostile limits must be positive")


@dataclass(slots=True)
class HostileStats:
    """What the server did: answers per path, connections being answered, body bytes written."""

    requests: dict[str, int] = field(default_factory=dict)
    active: int = 0
    bytes_sent: int = 0
    peak_write_buffer: int = 0  # the most bytes a connection's transport ever buffered
    stalled: int = 0  # connections waiting because their client does not read


class _Done(Exception):
    """The answer ends here (deadline passed while the client was not reading, or the server stops)."""


class _Closed(web.StreamResponse):
    """Returned once the raw bytes are written: aiohttp must not write a response of its own."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if request.transport is not None:
            request.transport.close()  # flushes what is buffered, then closes
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Connection:
    """One answer in progress: raw writes with backpressure, bounded in time and bytes."""

    def __init__(self, request: web.Request, server: HostileServer) -> None:
        self.request = request
        self.limits = server.limits
        self._server = server
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + server.limits.stream_s
        self.sent = 0
        writer = request.writer
        # the concrete writer: its write() can skip the drain, which _room() does, bounded in time
        assert isinstance(writer, StreamWriter)
        self._writer = writer

    @property
    def main_port(self) -> int:
        return self._server.main_port

    @property
    def live(self) -> bool:
        """The client is still there and no bound is reached."""
        transport = self.request.transport
        return (
            transport is not None
            and not transport.is_closing()
            and not self._server.stopping
            and self.sent < self.limits.max_stream_bytes
            and self._loop.time() < self.deadline
        )

    async def send(self, data: bytes) -> None:
        """Write ``data`` as is, once the transport has room for it (so at most its high-water mark
        plus ``data`` is ever buffered). Raises ConnectionError once the client is gone, ``_Done``
        when the deadline passes while the client is not reading."""
        try:
            async with asyncio.timeout(max(self.deadline - self._loop.time(), 0.0)):
                await self._room()
        except TimeoutError:
            self.abort()
            raise _Done from None
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client is gone")
        stats = self._server.stats
        stats.peak_write_buffer = max(stats.peak_write_buffer, transport.get_write_buffer_size() + len(data))
        await self._writer.write(data, drain=False)
        self.sent += len(data)
        stats.bytes_sent += len(data)
        await asyncio.sleep(0)  # a client reading as fast as we write must not starve the loop

    async def _room(self) -> None:
        if not self.request.protocol.writing_paused:
            return
        stats = self._server.stats
        stats.stalled += 1
        try:
            await self._writer.drain()
        finally:
            stats.stalled -= 1

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), PIECE):
            await self.send(bytes(view[start : start + PIECE]))

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the client leaves or a bound comes first; True if still live."""
        end = min(self._loop.time() + seconds, self.deadline)
        while self.live:
            remaining = end - self._loop.time()
            if remaining <= 0:
                return self.live
            await asyncio.sleep(min(remaining, POLL_S))
        return False

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


Answer = Callable[[_Connection], Awaitable[None]]


# --- raw framing -------------------------------------------------------------------------------------


def _head(status: str, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _finite(status: str, body: bytes, content_type: str | None, *headers: str) -> bytes:
    """A well-formed answer: correct Content-Length, then the body."""
    typed = (f"Content-Type: {content_type}",) if content_type else ()
    return _head(status, *typed, *headers, f"Content-Length: {len(body)}") + body


def _json_bytes(status: str, body: Any) -> bytes:
    return _finite(status, json.dumps(body).encode(), "application/json")


async def _flood(conn: _Connection, piece: bytes) -> None:
    while conn.live:
        await conn.send(piece)


# --- streams and broken framing -------------------------------------------------------------------------


async def _chunked_negative(conn: _Connection) -> None:
    await conn.send(
        _head("200 OK", "Content-Type: image/png", "Transfer-Encoding: chunked") + b"-5\r\nhello\r\n"
    )
    while await conn.pause(conn.limits.slow_interval_s):
        await conn.send(b"5\r\nmore!\r\n")


async def _chunked_giant(conn: _Connection) -> None:
    await conn.send(
        _head("200 OK", "Content-Type: application/octet-stream", "Transfer-Encoding: chunked")
        + b"FFFFFFFFFFFFFFFF\r\n"
    )
    await _flood(conn, _ZEROS)


async def _endless(conn: _Connection) -> None:
    first = b"%x\r\n" % len(PNG_SIGNATURE) + PNG_SIGNATURE + b"\r\n"
    await conn.send(_head("200 OK", "Content-Type: image/png", "Transfer-Encoding: chunked") + first)
    await _flood(conn, _ENDLESS_CHUNK)


async def _endless_close(conn: _Connection) -> None:
    await conn.send(_head("200 OK", "Content-Type: image/png") + PNG_SIGNATURE)
    await _flood(conn, _ZEROS)


async def _huge_length(conn: _Connection) -> None:
    await conn.send(_head("200 OK", "Content-Type: image/png", "Content-Length: 5000000000") + PNG_SIGNATURE)
    await _flood(conn, _ZEROS)


async def _drip(conn: _Connection) -> None:
    length = 1_000_000
    await conn.send(_head("200 OK", "Content-Type: image/png", f"Content-Length: {length}"))
    for i in range(length):
        await conn.send(PNG_SIGNATURE[i : i + 1] or b"\0")
        if not await conn.pause(conn.limits.drip_interval_s):
            return


# --- redirects --------------------------------------------------------------------------------------------


def _redirect(location: str) -> bytes:
    body = f'<html><body><a href="{location}">Found</a></body></html>'.encode()
    return _finite("302 Found", body, "text/html", f"Location: {location}")


async def _redirect_loopback(conn: _Connection) -> None:
    await conn.send(_redirect(f"http://{HOST}:{conn.main_port}/media/anything.png"))


async def _redirect_metadata(conn: _Connection) -> None:
    await conn.send(_redirect(METADATA_URL))


async def _redirect_empty(conn: _Connection) -> None:
    await conn.send(_finite("302 Found", b"", None, "Location: /redirect-empty-target"))


async def _redirect_empty_target(conn: _Connection) -> None:
    await conn.send(_json_bytes("404 Not Found", {"error": "the target of /redirect-empty does not exist"}))


async def _redirect_loop(conn: _Connection) -> None:
    # raw_path is what the client sent (not percent-decoded, so no CR/LF can reach the header)
    await conn.send(_redirect(quote(conn.request.raw_path, safe=_LOCATION_SAFE)))


# --- provider impersonation --------------------------------------------------------------------------------

_VISUAL = Project("visual", PROJECT_IDS["visual"])
_CSAM = Project("csam", PROJECT_IDS["csam"])
_HEADS = {"visual": VISUAL_HEADS, "text": TEXT_HEADS, "csam_combined": CSAM_HEADS}


def _numeric(request: web.BaseRequest) -> bool:
    """Hive's ``status.code`` is a number on ``/api/v2/`` paths."""
    return "/api/v2/" in request.path


def score_string_body(project: Project, *, numeric_status: bool) -> dict[str, Any]:
    """A valid-looking task body whose class scores are strings."""
    heads = _HEADS.get(project.kind, VISUAL_HEADS)
    classes = [
        {"class": name, "score": "high" if i == 0 else "0.01"}
        for head in heads
        for i, name in enumerate(head)
    ]
    return task_body(project, [{"time": 0, "classes": classes}], None, None, numeric_status=numeric_status)


def output_not_objects_body(*, numeric_status: bool) -> dict[str, Any]:
    return task_body(_VISUAL, ["general_nsfw", 0.99, "no_gun", 1], None, None, numeric_status=numeric_status)


def status_not_list_body(*, numeric_status: bool) -> dict[str, Any]:
    body = task_body(_VISUAL, [], None, None, numeric_status=numeric_status)
    body["status"] = "SUCCESS"
    return body


def hashes_garbage_body(project: Project, *, numeric_status: bool) -> dict[str, Any]:
    """A CSAM task body whose ``matches`` is not a list and whose ``matchDistance`` is a string."""
    hashes = [
        {"hashType": "pdq", "matchTypes": ["CSAM"], "matches": {"matchDistance": "zero", "sourceId": "x"}},
        {"hashType": "md5", "matchTypes": "CSAM", "matches": "all of them"},
        {"hashType": "pdq", "matchTypes": ["CSAM"], "matches": [{"matchDistance": "3", "sourceId": 7}]},
    ]
    output = [{"time": 0, "file": {"fileType": "image", "md5": 12345}, "hashes": hashes}]
    return task_body(project, output, None, None, numeric_status=numeric_status)


def index_garbage_body(project: Project) -> dict[str, Any]:
    """A custom index body of the wrong shape: ``status`` a string, ``matches`` an object."""
    return {
        "id": "garbage",
        "task_id": "garbage",
        "project_id": project.project_id,
        "status": "SUCCESS",
        "response": {"output": {"matches": {"similarity_score": "high", "id": 1}, "status": 1}},
    }


def huawei_garbage_body() -> dict[str, Any]:
    return {"count": "x", "result": [1, "a", {"sim": "high"}]}


def _credentials(request: web.BaseRequest) -> tuple[str, str]:
    return request.headers.get("Authorization", ""), request.headers.get("X-Auth-Token", "")


def echo_body(request: web.BaseRequest) -> dict[str, Any]:
    """Both providers' error keys, each message carrying the credentials the client sent."""
    auth, token = _credentials(request)
    return {
        "return_code": 403,
        "message": f"Unauthorized: you sent Authorization: {auth} X-Auth-Token: {token}",
        "error_code": "IS.0004",
        "error_msg": f"token {token} invalid",
    }


@cache
def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@cache
def _giant_parts(total: int) -> tuple[bytes, bytes, int, bytes]:
    """(prefix, item, count, tail) of a valid Hive task body of exactly ``total`` bytes: prefix ``[``,
    ``count`` frame items joined by commas, whitespace, ``]`` and the envelope's tail."""
    marker = "@@output@@"
    envelope = json.dumps(task_body(_VISUAL, marker, None, None, numeric_status=False)).encode()
    prefix, _, suffix = envelope.partition(json.dumps(marker).encode())
    item = json.dumps({"time": 0, "classes": [{"class": c, "score": 0.001} for c in VISUAL_HEADS[0]]})
    item_bytes = item.encode()
    room = total - len(prefix) - len(suffix) - 2
    count = (room + 1) // (len(item_bytes) + 1)
    pad = room - (count * (len(item_bytes) + 1) - 1)
    return prefix + b"[", item_bytes, count, b" " * pad + b"]" + suffix


async def _giant_json(conn: _Connection) -> None:
    total = conn.limits.giant_json_bytes
    opening, item, count, tail = _giant_parts(total)
    await conn.send(_head("200 OK", "Content-Type: application/json", f"Content-Length: {total}") + opening)
    per = max(1, PIECE // (len(item) + 1))
    batch = (item + b",") * per
    remaining = count - 1  # the items followed by a comma
    while remaining > 0:
        if not conn.live:
            return
        take = min(per, remaining)
        await conn.send(batch if take == per else (item + b",") * take)
        remaining -= take
    await conn.send(item + tail)


def _json_answer(build: Callable[[web.Request], Any], status: str = "200 OK") -> Answer:
    async def answer(conn: _Connection) -> None:
        await conn.send_all(_json_bytes(status, build(conn.request)))

    return answer


async def _not_json(conn: _Connection) -> None:
    await conn.send(_finite("200 OK", b"<html>", "application/json"))


async def _deep_json(conn: _Connection) -> None:
    await conn.send_all(_finite("200 OK", _deep(conn.limits.deep_levels), "application/json"))


async def _not_found(conn: _Connection) -> None:
    await conn.send(_json_bytes("404 Not Found", {"error": "no hostile answer here", "paths": list(PATHS)}))


ROUTES: dict[str, Answer] = {
    "/chunked-negative": _chunked_negative,
    "/chunked-giant": _chunked_giant,
    "/endless-close": _endless_close,
    "/endless": _endless,
    "/huge-length": _huge_length,
    "/drip": _drip,
    "/redirect-loopback": _redirect_loopback,
    "/redirect-metadata": _redirect_metadata,
    "/redirect-empty-target": _redirect_empty_target,
    "/redirect-empty": _redirect_empty,
    "/redirect-loop": _redirect_loop,
    "/shape/score-string": _json_answer(lambda r: score_string_body(_VISUAL, numeric_status=_numeric(r))),
    "/shape/output-not-objects": _json_answer(lambda r: output_not_objects_body(numeric_status=_numeric(r))),
    "/shape/status-not-list": _json_answer(lambda r: status_not_list_body(numeric_status=_numeric(r))),
    "/shape/not-json": _not_json,
    "/shape/huawei-result-garbage": _json_answer(lambda _: huawei_garbage_body()),
    "/shape/hashes-garbage": _json_answer(lambda r: hashes_garbage_body(_CSAM, numeric_status=_numeric(r))),
    "/shape/deep": _deep_json,
    "/shape/giant-json": _giant_json,
    "/echo": _json_answer(echo_body, "403 Forbidden"),
}
# longest first: /endless-close before /endless, /redirect-loopback before /redirect-loop
PATHS = tuple(sorted(ROUTES, key=len, reverse=True))


def _answer_for(path: str) -> tuple[str, Answer]:
    for prefix in PATHS:
        if path.startswith(prefix):
            return prefix, ROUTES[prefix]
    return "unknown", _not_found


# --- the server ------------------------------------------------------------------------------------------


class HostileServer:
    """The hostile HTTP server on 127.0.0.1: ``async with HostileServer() as hostile: hostile.url``.

    ``main_port`` is the simulator's own port (``/redirect-loopback`` points there); it may be set
    after start."""

    def __init__(self, port: int = 0, *, main_port: int = 0, limits: HostileLimits | None = None) -> None:
        self.limits = limits or HostileLimits()
        self.main_port = main_port
        self.stats = HostileStats()
        self.stopping = False
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._open: set[_Connection] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the hostile server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self._requested_port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self._port

    async def stop(self) -> None:
        self.stopping = True
        for conn in tuple(self._open):
            conn.abort()  # a stream waiting for a drain wakes up
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HostileServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name, answer = _answer_for(request.path)
        self.stats.requests[name] = self.stats.requests.get(name, 0) + 1
        self.stats.active += 1
        conn = _Connection(request, self)
        self._open.add(conn)
        try:
            if await _drain_body(request, self.limits.stream_s):
                await answer(conn)
        except (ConnectionError, _Done):
            pass  # the client left, or a bound was reached: these answers are meant to end like that
        finally:
            self._open.discard(conn)
            self.stats.active -= 1
        return _Closed()


async def _drain_body(request: web.Request, within_s: float) -> bool:
    """Read and discard the request body (any size, in pieces); False if the client did not finish it."""
    try:
        async with asyncio.timeout(within_s):
            while await request.content.readany():
                pass
    except (ConnectionError, HttpProcessingError, TimeoutError):
        return False
    return True


# --- faults of the normal simulator ---------------------------------------------------------------------


def set_hostile_fault(faults: Faults, name: str, rate: float) -> None:
    """Set a hostile fault rate. ``Faults.set`` knows only the classic names; ``Faults.hit`` draws any
    name from ``rates``, with the same seeded generator (a rate of 0 draws nothing)."""
    if name not in HOSTILE_FAULT_NAMES:
        raise ValueError(f"unknown hostile fault {name!r}; known: {', '.join(HOSTILE_FAULT_NAMES)}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault rate for {name} must be within 0..1")
    faults.rates[name] = rate


def hostile_fault_rates(faults: Faults) -> dict[str, float]:
    return {name: faults.rates.get(name, 0.0) for name in HOSTILE_FAULT_NAMES}


def fault_answer(request: web.Request, name: str) -> web.Response:
    """The ``wrong_shape`` / ``echo_credentials`` answer to a Hive (``/api/``) or Huawei (``/v1/``) call."""
    huawei = request.path.startswith("/v1/")
    if name == "echo_credentials":
        return _echo_fault(request, huawei=huawei)
    if huawei:
        return web.json_response(huawei_garbage_body())
    return web.json_response(_hive_wrong_shape(request))


def _echo_fault(request: web.Request, *, huawei: bool) -> web.Response:
    auth, token = _credentials(request)
    if huawei:
        return web.json_response({"error_code": "IS.0004", "error_msg": f"token {token} invalid"}, status=400)
    return web.json_response({"return_code": 403, "message": f"Unauthorized: you sent {auth}"}, status=403)


def _hive_wrong_shape(request: web.Request) -> dict[str, Any]:
    """Shaped for the caller's project (the key passed auth before the fault was drawn)."""
    key = _credentials(request)[0].partition(" ")[2].strip()
    project = request.app[STATE_KEY].projects.get(key, _VISUAL)
    numeric = request.path.startswith("/api/v2/task/")
    if "/custom_index/" in request.path:
        return index_garbage_body(project)
    if project.kind == "csam":
        return hashes_garbage_body(project, numeric_status=numeric)
    return score_string_body(project, numeric_status=numeric)


def startup_hostile_faults(faults: Faults, rates: Mapping[str, float]) -> None:
    """Apply the command line's hostile fault rates (at start, and again after ``/_admin/reset``)."""
    for name, rate in rates.items():
        set_hostile_fault(faults, name, rate)
