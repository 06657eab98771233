"""The provider simulator: Hive and Huawei endpoints on 127.0.0.1 with real PDQ matching."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .app import build_app
from .state import DEFAULT_KEYS, LatencyModel, SimulatorState

__all__ = ["DEFAULT_KEYS", "LatencyModel", "SimulatorState", "build_app", "serve"]


async def serve(
    host: str,
    port: int,
    state: SimulatorState | None = None,
    *,
    ready: asyncio.Event | None = None,
    allow_remote_fetch: bool = False,
) -> None:
    """Run until cancelled."""
    runner = web.AppRunner(build_app(state, allow_remote_fetch=allow_remote_fetch), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
