"""The health port is a way bytes get in (probes, scrapes, and anyone the network lets reach it):
hostile requests are refused by the well-kept server's own bounds, no body is ever read, and the
probe answers throughout."""

from __future__ import annotations

import asyncio

from consumer.runtime.health import HealthServer, Probe, metrics_handler
from consumer.runtime.workers import Worker


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 16), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def test_hostile_requests_are_refused_and_the_probe_answers() -> None:
    server = HealthServer(
        "127.0.0.1",
        0,
        alive=lambda: Probe(True),
        ready=lambda: Probe(False, {"why": "x"}),
        metrics=metrics_handler(Worker()),
    )
    port = await server.start()
    try:
        hostile = {
            "giant request line": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "giant header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100_000 + b"\r\n\r\n",
            "too many headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(1000))
            + b"\r\n",
            "not http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
            "a body announced as 1 GB": b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000"
            b"\r\n\r\n",
            "a negative length": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "smuggling": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        }
        for name, request in hostile.items():
            answer = await _exchange(port, request)
            assert _status(answer) in (0, 400, 405, 413, 414, 431), (name, answer[:80])
            alive = await _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _status(alive) == 200, name
        ready = await _exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _status(ready) == 503 and b'"why": "x"' in ready
        unknown = await _exchange(
            port, b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert _status(unknown) in (400, 404)
    finally:
        await server.stop()


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    """A client cannot hold the port's sockets open for aiohttp's default hour."""
    server = HealthServer(
        "127.0.0.1",
        0,
        alive=lambda: Probe(True),
        ready=lambda: Probe(True),
        metrics=metrics_handler(Worker()),
        keepalive_s=0.2,
    )
    port = await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answered = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert _status(answered) == 200
        # kept alive, then closed by the server once idle: the read ends (EOF) well within the deadline
        rest = await asyncio.wait_for(reader.read(), 10)
        assert b"HTTP/1.1" not in rest
        writer.close()
    finally:
        await server.stop()
