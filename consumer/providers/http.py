"""The one place provider HTTP calls go out: etiquette per check (adaptive concurrency, rate limit,
circuit breaker) around each attempt, and transport failures as TransientError."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..errors import TransientError
from ..httpclient import HttpClient
from ..limits import AimdLimit, CircuitBreaker, TokenBucket
from ..telemetry import metrics

__all__ = ["ProviderGate", "count_retry", "send"]

OVERLOAD_STATUS = {429, 503}


class ProviderGate:
    """One check's etiquette: at most ``limit.allowed`` calls at once (AIMD: grows while latency
    holds, halves on 429/503/timeouts), at most ``bucket.rate`` calls per second, and a circuit
    breaker that, once open, makes callers wait (never fail) until a probe succeeds — so an outage
    slows intake through backpressure instead of failing uploads (the check's deadline still
    bounds each upload's wait: fail closed)."""

    def __init__(
        self,
        check: str,
        limit: AimdLimit | None = None,
        bucket: TokenBucket | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.limit = limit or AimdLimit()
        self.bucket = bucket
        self.breaker = breaker or CircuitBreaker()
        self._clock = clock
        self._active = 0
        self._changed = asyncio.Condition()

    async def enter(self) -> None:
        while (wait := self.breaker.wait(self._clock())) > 0:
            metrics.CIRCUIT_STATE.labels(self.check).set(int(self.breaker.state(self._clock())))
            await asyncio.sleep(wait)
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < self.limit.allowed)
            self._active += 1
        while self.bucket is not None and (wait := self.bucket.take(self._clock())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)  # the bucket refills with time: nothing to wait on but the clock

    async def exit(self, outcome: str, latency: float) -> None:
        if outcome == "ok":
            self.limit.succeeded(latency)
        elif outcome == "overload":
            self.limit.overloaded()
        self.breaker.record(outcome == "ok", self._clock())
        metrics.CONCURRENCY_LIMIT.labels(self.check).set(self.limit.limit)
        metrics.CIRCUIT_STATE.labels(self.check).set(int(self.breaker.state(self._clock())))
        async with self._changed:
            self._active -= 1
            # wake only as many waiters as there are free slots (notify_all would wake every waiter
            # on every release: quadratic when hundreds wait)
            self._changed.notify(max(0, self.limit.allowed - self._active))


def count_retry(exc: TransientError) -> None:
    reason = "timeout" if "timeout" in str(exc) else str(exc.status or exc.code or "transport")
    metrics.RETRIES.labels(exc.check or "unknown", reason).inc()


def _outcome(status: int) -> str:
    if status in OVERLOAD_STATUS:
        return "overload"
    return "failure" if status >= 500 else "ok"


async def send(
    http: HttpClient,
    method: str,
    url: str,
    *,
    check: str,
    provider: str,
    gate: ProviderGate | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One attempt. Timeouts and connection errors are transient; the caller maps the response."""
    if gate is not None:
        await gate.enter()
    started = time.monotonic()
    outcome = "failure"
    try:
        resp = await http.request(method, url, **kwargs)
        outcome = _outcome(resp.status_code)
        return resp
    except httpx.TimeoutException as exc:
        outcome = "overload"
        raise TransientError(
            f"{check}: timeout calling {provider} ({type(exc).__name__})", check=check
        ) from None
    except httpx.TransportError as exc:
        raise TransientError(
            f"{check}: cannot reach {provider} ({type(exc).__name__})", check=check
        ) from None
    finally:
        elapsed = time.monotonic() - started
        metrics.PROVIDER_REQUESTS.labels(check, outcome).inc()
        metrics.PROVIDER_DURATION.labels(check).observe(elapsed)
        if gate is not None:
            await gate.exit(outcome, elapsed)
