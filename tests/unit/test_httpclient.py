"""The production client (aiohttp) against real sockets on 127.0.0.1: bodies are bounded while they
stream, malformed framing is an error (never a loop), the egress policy refuses loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from consumer.errors import EgressRefused, ResponseTooLarge
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import AiohttpClient, HttpxClient

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    """raw_server(script) -> base URL of a server that answers every connection with ``script``."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answer(head: bytes, body: bytes = b"") -> Script:
    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()

    return script


def endless(head: bytes, chunk: bytes) -> Script:
    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head + b"\r\n\r\n")
        for _ in range(100_000):  # far more than any bound; the client hangs up first
            writer.write(chunk)
            await writer.drain()

    return script


ALLOW_LOOPBACK = EgressPolicy.of(allow=["127.0.0.0/8"])
DRIP_INTERVAL_S = 0.05  # the hostile server sends one byte this often


async def test_small_answers_are_read_whole(raw_server: Callable[[Script], Awaitable[str]]) -> None:
    url = await raw_server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b", b"ok"))
    async with AiohttpClient(4, egress=ALLOW_LOOPBACK) as http:
        got = await http.request("GET", url)
    assert (got.status_code, got.content, got.headers["x-a"]) == (200, b"ok", "b")


async def test_a_declared_length_over_the_bound_is_refused_before_reading(
    raw_server: Callable[[Script], Awaitable[str]],
) -> None:
    url = await raw_server(endless(b"HTTP/1.1 200 OK\r\nContent-Length: 5000000000", b"x" * 65536))
    async with AiohttpClient(4, egress=ALLOW_LOOPBACK) as http:
        with pytest.raises(ResponseTooLarge) as caught:
            await http.request("GET", url, max_bytes=1 << 20)
    assert caught.value.declared == 5_000_000_000


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",  # endless chunks
        b"HTTP/1.1 200 OK\r\nConnection: close",  # until close, endless
    ],
)
async def test_endless_bodies_are_cut_at_the_bound(
    raw_server: Callable[[Script], Awaitable[str]], head: bytes
) -> None:
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n" if b"chunked" in head else b"x" * 65536
    url = await raw_server(endless(head, chunk))
    async with AiohttpClient(4, timeout_s=20, egress=ALLOW_LOOPBACK) as http:
        with pytest.raises(ResponseTooLarge):
            await http.request("GET", url, max_bytes=2 << 20)


@pytest.mark.parametrize("size", [b"-5", b"FFFFFFFFFFFFFFFFFFFF", b"zz"])
async def test_malformed_chunk_sizes_are_protocol_errors(
    raw_server: Callable[[Script], Awaitable[str]], size: bytes
) -> None:
    url = await raw_server(
        endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", size + b"\r\n" + b"x" * 4096)
    )
    async with AiohttpClient(4, timeout_s=10, egress=ALLOW_LOOPBACK) as http:
        with pytest.raises(httpx.TransportError):
            await http.request("GET", url, max_bytes=1 << 20)


async def test_a_slow_drip_ends_at_the_whole_exchange_bound(
    raw_server: Callable[[Script], Awaitable[str]],
) -> None:
    async def drip(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(DRIP_INTERVAL_S)

    url = await raw_server(drip)
    async with AiohttpClient(4, timeout_s=0.5, egress=ALLOW_LOOPBACK) as http:
        with pytest.raises(httpx.TimeoutException):
            await http.request("GET", url)


async def test_loopback_is_refused_without_an_allow_list(
    raw_server: Callable[[Script], Awaitable[str]],
) -> None:
    url = await raw_server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2", b"ok"))
    port = url.rsplit(":", 1)[1]
    async with AiohttpClient(4, egress=EgressPolicy()) as http:
        with pytest.raises(EgressRefused, match="loopback"):
            await http.request("GET", f"http://localhost:{port}/")


async def test_redirects_are_never_followed_here(raw_server: Callable[[Script], Awaitable[str]]) -> None:
    url = await raw_server(
        answer(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0")
    )
    async with AiohttpClient(4, egress=ALLOW_LOOPBACK) as http:
        got = await http.request("GET", url)
    assert (got.status_code, got.headers["location"]) == (302, "http://169.254.169.254/")


async def test_mock_transport_client_bounds_bodies_too() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 5000)

    async with HttpxClient(httpx.MockTransport(handler)) as http:
        assert len((await http.request("GET", "http://provider.test/")).content) == 5000
        with pytest.raises(ResponseTooLarge):
            await http.request("GET", "http://provider.test/", max_bytes=100)
