"""``/healthz`` (alive: event loop responsive, no fatal error), ``/readyz`` (assigned, consuming,
not stalled) and ``/metrics`` on a small HTTP server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from consumer.runtime.workers import Worker, exposition
from consumer.transports.serving import KEEPALIVE_S

__all__ = ["HealthServer", "Probe", "metrics_handler"]

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


def metrics_handler(worker: Worker) -> Handler:
    """``GET /metrics`` of this worker (worker 0's has every worker's series)."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=await exposition(worker), headers={"content-type": CONTENT_TYPE_LATEST})

    return answer


def _answer(probe: Probe) -> web.Response:
    return web.json_response({"ok": probe.ok, **probe.detail}, status=200 if probe.ok else 503)


class HealthServer:
    """Answers on the service's own event loop: an answer at all proves the loop is responsive."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        alive: Callable[[], Probe],
        ready: Callable[[], Probe],
        metrics: Handler,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._host, self._port, self._keepalive_s = host, port, keepalive_s
        self._alive, self._ready, self._metrics = alive, ready, metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self._keepalive_s)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def _healthz(self, _: web.Request) -> web.Response:
        return _answer(self._alive())

    async def _readyz(self, _: web.Request) -> web.Response:
        return _answer(self._ready())

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
