"""Shared pieces of the simulator's HTTP surface: app keys, fetching, latency, fault gates."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from moderation_simulator.state import SimulatorState

__all__ = [
    "FETCH_KEY",
    "HOSTILE_ANSWER",
    "HOSTILE_FAULT_NAMES",
    "REMOTE_KEY",
    "STATE_KEY",
    "FetchFailed",
    "delay",
    "fault_gate",
    "fetch",
    "now_iso",
    "state_of",
]

STATE_KEY = web.AppKey("state", SimulatorState)
FETCH_KEY = web.AppKey("fetch", httpx.AsyncClient)
REMOTE_KEY = web.AppKey("allow_remote", bool)
MAX_FETCH_BYTES = 50_000_000
HOSTILE_FAULT_NAMES = ("echo_credentials", "wrong_shape")
# Set per provider request by the app's middleware: the provider-specific answer to a hostile fault
# (hive.py and huawei.py call fault_gate without the request, which that answer needs).
HOSTILE_ANSWER: ContextVar[Callable[[str], web.Response] | None] = ContextVar("hostile_answer", default=None)


class FetchFailed(Exception):
    """Hive task code 2001 (download failed) / 2002 (malformed URL) / 2003 (unreachable host)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def state_of(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_url(app: web.Application, url: str) -> bool:
    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and (app[REMOTE_KEY] or loopback(parts.hostname or ""))
    )


async def fetch(app: web.Application, url: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchFailed(2002, f"Malformed media URL: {url!r}")
    if not allowed_url(app, url):
        raise FetchFailed(2003, "Media URL host is not reachable from the simulator (loopback only)")
    try:
        async with app[FETCH_KEY].stream("GET", url) as resp:
            if resp.status_code != 200:
                raise FetchFailed(2001, f"Failed to download media: HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_raw():  # bounded as it streams: hosts may send anything
                size += len(chunk)
                if size > MAX_FETCH_BYTES:
                    raise FetchFailed(2004, "Media too large to download")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise FetchFailed(2001, f"Failed to download media: {type(exc).__name__}") from None


async def delay(state: SimulatorState) -> None:
    wait = state.latency.sample_s()
    if wait > 0:
        await asyncio.sleep(wait)


async def fault_gate(
    state: SimulatorState,
    key: str,
    *,
    throttled: Callable[[float], web.Response],
    failed: Callable[[int], web.Response],
) -> web.Response | None:
    """Rate limit, then random faults. A response to send instead of serving the request, or None."""
    wait = state.throttle(key, time.monotonic())
    if wait > 0:
        return throttled(wait)
    fault = state.faults.request_fault()
    if fault == "hang":
        await asyncio.sleep(state.faults.hang_s)
        return failed(504)
    if fault == "429":
        return throttled(1.0)
    if fault is not None:
        return failed(int(fault))
    return _hostile_fault(state)


def _hostile_fault(state: SimulatorState) -> web.Response | None:
    """``echo_credentials`` / ``wrong_shape``, drawn after the classic faults (a rate of 0 draws nothing,
    so the classic draws of a seed stay as they were)."""
    answer = HOSTILE_ANSWER.get()
    if answer is None:
        return None
    for name in HOSTILE_FAULT_NAMES:
        if state.faults.hit(name):
            return answer(name)
    return None
