"""LeanTransport and HttpClient against real sockets on 127.0.0.1: a scripted raw server for the
framing cases (chunked, until-close, interim answers, stale keep-alive) and aiohttp for forms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from consumer.devtools.stack import wait_until_async
from consumer.httpclient import HttpClient
from consumer.providers.transport import LeanTransport

Script = Callable[[bytes], bytes | None]  # request head+body -> raw answer (None: close silently)


@dataclass
class RawServer:
    """Answers each request on a connection with ``script(request)``; counts connections."""

    script: Script
    close_after: int | None = None  # close a connection after this many answers
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.script(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                answered += 1
                if self.close_after is not None and answered >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> Script:
    return lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    async with HttpClient(LeanTransport(max_connections=4), timeout_s=5.0) as http:
        yield http


async def test_keep_alive_reuses_one_connection(client: HttpClient) -> None:
    async with RawServer(ok()) as srv:
        for _ in range(5):
            resp = await client.request("GET", srv.url + "/x")
            assert resp.status_code == 200
            assert resp.json() == {"ok": True}
        assert srv.connections == 1


async def test_chunked_answer_with_trailers(client: HttpClient) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: y\r\n\r\n"
    )
    async with RawServer(lambda _: answer) as srv:
        assert (await client.request("GET", srv.url)).content == b"Wikipedia"
        assert (await client.request("GET", srv.url)).content == b"Wikipedia"
        assert srv.connections == 1


async def test_read_until_close_and_connection_close(client: HttpClient) -> None:
    async with RawServer(lambda _: b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close_after=1) as srv:
        assert (await client.request("GET", srv.url)).content == b"until the end"
        assert (await client.request("GET", srv.url)).content == b"until the end"
        assert srv.connections == 2
    async with RawServer(ok(extra=b"connection: close\r\n"), close_after=1) as srv:
        for _ in range(3):
            assert (await client.request("GET", srv.url)).status_code == 200
        assert srv.connections == 3


async def test_interim_answer_and_bodiless_statuses(client: HttpClient) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    async with RawServer(lambda _: answer) as srv:
        assert (await client.request("POST", srv.url, content=b"x")).status_code == 204
    async with RawServer(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n") as srv:
        resp = await client.request("HEAD", srv.url)
        assert resp.status_code == 200
        assert resp.content == b""


async def test_stale_keep_alive_connection_is_retried_once_on_a_fresh_one(client: HttpClient) -> None:
    answer = ok()

    def second_request_on_a_connection_is_dropped(request: bytes) -> bytes | None:
        # request 2 arrives on the kept-alive connection: close it unanswered, as a server whose
        # idle timeout passed just then would
        return None if len(srv.requests) == 2 else answer(request)

    async with RawServer(second_request_on_a_connection_is_dropped) as srv:
        assert (await client.request("GET", srv.url)).status_code == 200
        assert (await client.request("GET", srv.url)).status_code == 200
        assert len(srv.requests) == 3
        assert srv.connections == 2


async def test_errors_are_httpx_exceptions(client: HttpClient) -> None:
    async with RawServer(lambda _: None) as srv:  # closes without answering, every time
        with pytest.raises(httpx.RemoteProtocolError):
            await client.request("GET", srv.url)
    async with RawServer(lambda _: b"garbage\r\n\r\n") as srv:
        url = srv.url
        with pytest.raises(httpx.RemoteProtocolError):
            await client.request("GET", url)
    with pytest.raises(httpx.ConnectError):  # closed now: nothing listens there
        await client.request("GET", url)
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.request("GET", "ftp://127.0.0.1/")


async def test_read_timeout(client: HttpClient) -> None:
    hold = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await hold.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/slow", slow)
    async with TestServer(app, host="127.0.0.1") as server:
        with pytest.raises(httpx.ReadTimeout):
            await client.request("GET", str(server.make_url("/slow")), timeout=0.05)
        hold.set()


async def test_pool_bound_and_forms_round_trip() -> None:
    active = peak = 0
    release = asyncio.Event()
    seen: list[dict[str, object]] = []

    async def form(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await release.wait()
            post = await request.post()
        finally:
            active -= 1
        media = post["media"]
        assert isinstance(media, web.FileField)
        seen.append({"field": post["note"], "name": media.filename, "data": media.file.read()})
        return web.json_response({"n": len(seen)})

    app = web.Application()
    app.router.add_post("/form", form)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        HttpClient(LeanTransport(max_connections=2), timeout_s=5.0) as http,
    ):
        url = str(server.make_url("/form"))
        files = {"media": ('odd "name".png', b"\x89PNG\r\n", "image/png")}
        calls = asyncio.gather(
            *(http.request("POST", url, data={"note": f"n{i}"}, files=files) for i in range(12))
        )
        assert await wait_until_async(lambda: active == 2, 10)  # both connections busy, ten waiting
        release.set()
        answers = await calls
    assert all(a.status_code == 200 for a in answers)
    assert peak <= 2
    assert sorted(str(s["field"]) for s in seen) == sorted(f"n{i}" for i in range(12))
    assert all(s["data"] == b"\x89PNG\r\n" for s in seen)
