"""The HTTP client every provider call uses: httpx's API (MockTransport in unit tests,
instrumentation), on the aiohttp transport by default because it costs about a third of httpx's own
transport in client CPU per request (measured with ``make bench``; the README has the figures)."""

from __future__ import annotations

from typing import Literal

import httpx

__all__ = ["make_http_client"]


def make_http_client(
    transport: Literal["aiohttp", "httpx"], max_connections: int, timeout_s: float = 10.0
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=timeout_s)
    return httpx.AsyncClient(limits=limits, timeout=timeout_s)
