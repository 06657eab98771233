"""The provider simulator: Hive and Huawei endpoints on 127.0.0.1 with real PDQ matching, and an
optional hostile server that attacks its client (``hostile``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from moderation_simulator.app import build_app
from moderation_simulator.hostile import HostileLimits, HostileServer
from moderation_simulator.state import DEFAULT_KEYS, LatencyModel, SimulatorState

__all__ = [
    "DEFAULT_KEYS",
    "HostileLimits",
    "HostileServer",
    "LatencyModel",
    "SimulatorState",
    "build_app",
    "serve",
]


async def serve(
    host: str,
    port: int,
    state: SimulatorState | None = None,
    *,
    ready: asyncio.Event | None = None,
    allow_remote_fetch: bool = False,
    hostile_port: int | None = None,
    hostile_faults: Mapping[str, float] | None = None,
) -> None:
    """Run until cancelled. ``hostile_port`` (0 = a free one): also run the hostile server, on
    127.0.0.1; ``GET /_admin/hostile`` reports its port. ``hostile_faults``: the ``wrong_shape`` and
    ``echo_credentials`` rates at start (``/_admin/reset`` returns to them)."""
    hostile = None if hostile_port is None else HostileServer(hostile_port, main_port=port)
    app = build_app(
        state, allow_remote_fetch=allow_remote_fetch, hostile=hostile, hostile_faults_at_start=hostile_faults
    )
    if hostile is None:
        await _run(app, host, port, ready)
        return
    await hostile.start()  # before the simulator: once /healthz answers, both listen
    try:
        await _run(app, host, port, ready, hostile)
    finally:
        await hostile.stop()


async def _run(
    app: web.Application,
    host: str,
    port: int,
    ready: asyncio.Event | None,
    hostile: HostileServer | None = None,
) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    if hostile is not None:
        hostile.main_port = int(runner.addresses[0][1])
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
