"""CPU per provider call of the HTTP client options, measured in the client process alone.

A server in another process answers a Hive-shaped multipart POST with a 1.3 KB JSON body; the
client sends ``CALLS`` requests with ``CONCURRENCY`` in flight over keep-alive connections and
reports its own CPU time per call (user + system). ``python -m bench.http_clients``; ``make bench``
runs it too. Options:

- ``AiohttpClient``: the production client (``consumer.httpclient``), aiohttp underneath, the
  multipart body built once, the answer read with a bound;
- ``aiohttp ClientSession``: aiohttp's own API with ``FormData``;
- ``HttpxClient+httpx-aiohttp``: httpx's request/response types on the httpx-aiohttp transport;
- ``httpx.AsyncClient+httpx-aiohttp``: httpx's full client on the same transport;
- ``httpx.AsyncClient``: httpx's own transport (httpcore).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from aiohttp import web

from consumer.transports.httpclient import AiohttpClient, HttpClient, HttpxClient

CALLS = int(os.environ.get("BENCH_HTTP_CALLS", "20000"))
CONCURRENCY = 32
ANSWER = json.dumps(
    {
        "id": "t" * 36,
        "status": [
            {
                "status": {"code": "0", "message": "SUCCESS"},
                "response": {
                    "input": {"model": "visual", "model_version": 1},
                    "output": [
                        {
                            "time": 0,
                            "classes": [{"class": f"class_{i}", "score": 0.01 * i} for i in range(24)],
                        }
                    ],
                },
            }
        ],
    }
).encode()
BODY = b"x" * 2000


def _serve(port: int, ready: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/api/v1/task/sync", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except KeyboardInterrupt:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _drive(call: Callable[[], Awaitable[int]]) -> float:
    for _ in range(200):  # warm connections and caches
        await call()
    remaining = CALLS

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await call()
            assert status == 200

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / CALLS * 1000


def _form() -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    return {}, {"media": ("upload", BODY, "image/png")}


async def _aiohttp(url: str) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def call() -> int:
            form = aiohttp.FormData()
            form.add_field("media", BODY, filename="upload", content_type="image/png")
            async with session.post(url, data=form, headers={"authorization": "token k"}) as resp:
                await resp.content.read(1 << 20)
                return resp.status

        return await _drive(call)


async def _ours(url: str, http: HttpClient) -> float:
    async with http:

        async def call() -> int:
            fields, files = _form()
            resp = await http.request("POST", url, data=fields, files=files, headers={"authorization": "t"})
            return resp.status_code

        return await _drive(call)


async def _httpx(url: str, transport: httpx.AsyncBaseTransport | None) -> float:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(transport=transport, limits=limits) as client:

        async def call() -> int:
            fields, files = _form()
            resp = await client.post(url, data=fields, files=files, headers={"authorization": "t"})
            return resp.status_code

        return await _drive(call)


def measure() -> dict[str, float]:
    from httpx_aiohttp import AiohttpTransport

    port = _free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the benchmark server did not start")
        url = f"http://127.0.0.1:{port}/api/v1/task/sync"
        options: dict[str, Callable[[], Awaitable[float]]] = {
            "AiohttpClient": lambda: _ours(url, AiohttpClient(64)),
            "aiohttp ClientSession": lambda: _aiohttp(url),
            "HttpxClient+httpx-aiohttp": lambda: _ours(url, HttpxClient(AiohttpTransport())),
            "httpx.AsyncClient+httpx-aiohttp": lambda: _httpx(url, AiohttpTransport()),
            "httpx.AsyncClient": lambda: _httpx(url, None),
        }
        import uvloop

        return {name: round(uvloop.run(run()), 4) for name, run in options.items()}
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    results = measure()
    print(json.dumps({"client_cpu_ms_per_call": results, "calls": CALLS, "concurrency": CONCURRENCY}))
    for name, ms in results.items():
        print(f"{name:<34} {ms:.3f} ms CPU per call")
