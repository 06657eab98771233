"""The one place provider HTTP calls go out: transport failures become TransientError.

(Issue 4 adds the per-provider concurrency limit, rate limit and circuit breaker here.)
"""

from __future__ import annotations

from typing import Any

import httpx

from ..errors import TransientError

__all__ = ["send"]


async def send(
    http: httpx.AsyncClient, method: str, url: str, *, check: str, provider: str, **kwargs: Any
) -> httpx.Response:
    """One attempt. Timeouts and connection errors are transient; the caller maps the response."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientError(
            f"{check}: timeout calling {provider} ({type(exc).__name__})", check=check
        ) from None
    except httpx.TransportError as exc:
        raise TransientError(
            f"{check}: cannot reach {provider} ({type(exc).__name__})", check=check
        ) from None
