"""The one place provider HTTP calls (and media downloads, ``checks.media``) go out: etiquette per
check (adaptive concurrency, rate limit, circuit breaker) around each attempt, bounded retries,
request metrics and client spans, and transport failures as TransientError."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx
from opentelemetry.trace import Span

from consumer.checks.retry import RetryPolicy, retrying
from consumer.core.limits import AimdLimit, BreakerState, CircuitBreaker, TokenBucket
from consumer.errors import ProviderAnswerError, ProviderTimeout, TransientError
from consumer.telemetry import metrics, tracing
from consumer.transports.httpclient import Answer, HttpClient

__all__ = ["ProviderEndpoint", "ProviderGate", "count_retry", "deadline_scope", "send"]

# The deadline of the check being run (set by the pipeline). Time spent waiting for an open circuit
# is added back to it: an outage holds work, it does not fail it closed.
deadline_scope: ContextVar[asyncio.Timeout | None] = ContextVar("check_deadline", default=None)

OVERLOAD_STATUS = {429, 503}
T = TypeVar("T")


class ProviderGate:
    """One check's etiquette: at most ``limit.allowed`` calls at once (AIMD: grows while latency
    holds, halves on 429/503/timeouts), at most ``bucket.rate`` calls per second, and a circuit
    breaker that, once open, makes callers wait (never fail) until a probe succeeds — so an outage
    slows intake through backpressure instead of failing uploads.

    The common case (breaker closed, a free slot, no queue) takes no await at all; waiters queue in
    arrival order and a finishing call hands its slot straight to the next one."""

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
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._healthy = self.limit.limit  # the limit before the current run of failures
        self._pre_outage: float | None = None  # ... kept while the circuit is open
        self._limit_gauge = metrics.CONCURRENCY_LIMIT.labels(check)
        self._circuit_gauge = metrics.CIRCUIT_STATE.labels(check)
        self._limit_gauge.set(self.limit.limit)

    @property
    def is_open(self) -> bool:
        """The circuit is open (not yet probing): work that needs this check should wait."""
        return self.breaker.state(self._clock()) is BreakerState.OPEN

    async def enter(self) -> None:
        if self.breaker.opened_at is not None:
            while (wait := self.breaker.wait(self._clock())) > 0:
                self._circuit_gauge.set(int(self.breaker.state(self._clock())))
                scope = deadline_scope.get()
                if scope is not None and (when := scope.when()) is not None:
                    scope.reschedule(when + wait)
                await asyncio.sleep(wait)
        if self._waiters or self._active >= self.limit.allowed:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # the slot is ours when it resolves (``_active`` already counts it)
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._active -= 1  # handed a slot just as we were cancelled: pass it on
                    self._wake()
                else:
                    self._waiters.remove(waiter)
                raise
        else:
            self._active += 1
        if self.bucket is not None:
            while (wait := self.bucket.take(self._clock())) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)  # the bucket refills with time: nothing to wait on but the clock

    def exit(self, outcome: str, latency: float) -> None:
        if outcome == "ok" and not self.breaker.failures and self.breaker.opened_at is None:
            self._healthy = self.limit.limit
        if outcome == "ok":
            self.limit.succeeded(latency)
        elif outcome == "overload":
            self.limit.overloaded()
        if outcome != "ok" or self.breaker.opened_at is not None or self.breaker.failures:
            was_open = self.breaker.opened_at is not None
            self.breaker.record(outcome == "ok", self._clock())
            self._circuit_gauge.set(int(self.breaker.state(self._clock())))
            if not was_open and self.breaker.opened_at is not None:
                self._pre_outage = self._healthy
            elif was_open and self.breaker.opened_at is None and self._pre_outage is not None:
                # an outage is not a capacity signal: the failed probes must not leave the limit at
                # its floor, which would take minutes of additive increase to climb back
                self.limit.limit = max(self.limit.limit, self._pre_outage)
                self._pre_outage = None
        self._limit_gauge.set(self.limit.limit)
        self._active -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._active < self.limit.allowed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                waiter.set_result(None)


def count_retry(exc: TransientError) -> None:
    if isinstance(exc, ProviderAnswerError):
        reason = "answer"
    elif isinstance(exc, ProviderTimeout):
        reason = "timeout"
    else:
        reason = str(exc.status or exc.code or "transport")
    metrics.child(metrics.RETRIES, exc.check or "unknown", reason).inc()


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
    resend_count: int = 0,
    refusals: tuple[type[Exception], ...] = (),
    **kwargs: Any,
) -> Answer:
    """One attempt (``resend_count``: the retries before it). Timeouts and connection errors are
    transient, except ``refusals``, raised as they are; the caller maps the response."""
    if gate is not None:
        await gate.enter()
    if not tracing.traced():
        return await _attempt(http, method, url, check, provider, gate, None, refusals, kwargs)
    with tracing.client_span(method, url, resend_count) as span:
        return await _attempt(http, method, url, check, provider, gate, span, refusals, kwargs)


async def _attempt(
    http: HttpClient,
    method: str,
    url: str,
    check: str,
    provider: str,
    gate: ProviderGate | None,
    span: Span | None,
    refusals: tuple[type[Exception], ...],
    kwargs: dict[str, Any],
) -> Answer:
    started = time.monotonic()
    outcome, status = "failure", 0
    try:
        resp = await http.request(method, url, **kwargs)
        status = resp.status_code
        outcome = _outcome(status)
        if span is not None:
            span.set_attribute("http.response.status_code", resp.status_code)
            if resp.status_code >= 400:
                tracing.failed(str(resp.status_code), span)
        return resp
    except refusals as exc:  # the caller's to map (``except ()`` catches nothing)
        if span is not None:
            tracing.failed(type(exc).__name__, span)
        raise
    except httpx.TimeoutException as exc:
        outcome = "overload"
        if span is not None:
            tracing.failed(type(exc).__name__, span)
        raise ProviderTimeout(
            f"{check}: timeout calling {provider} ({type(exc).__name__})", check=check
        ) from None
    except httpx.TransportError as exc:
        if span is not None:
            tracing.failed(type(exc).__name__, span)
        raise TransientError(
            f"{check}: cannot reach {provider} ({type(exc).__name__})", check=check
        ) from None
    finally:
        elapsed = time.monotonic() - started
        metrics.count_request(provider, check, status, outcome, elapsed)
        if gate is not None:
            gate.exit(outcome, elapsed)


class ProviderEndpoint:
    """The one way a provider call goes out, whatever the vendor: each attempt through the check's
    gate (``send``), transient errors retried within ``retry`` (a failure while the circuit is open
    spends no attempt), and the answer mapped by the vendor's ``map_answer`` (its status and error
    codes to the error tree, its body to a result), itself retried when it raises a transient error
    (a malformed answer). ``refusals``: client exceptions that are not the far end failing (a bound
    or an egress rule of our own), raised as they are for the caller to map, never retried."""

    def __init__(
        self,
        http: HttpClient,
        *,
        check: str,
        provider: str,
        retry: RetryPolicy,
        gate: ProviderGate | None = None,
        timeout_s: float = 10.0,
        refusals: tuple[type[Exception], ...] = (),
    ) -> None:
        self._http = http
        self.check = check
        self._provider = provider
        self._retry = retry
        self._gate = gate
        self._timeout = timeout_s
        self._refusals = refusals

    def _outage(self) -> bool:
        return self._gate is not None and self._gate.is_open

    async def call(
        self, method: str, url: str, map_answer: Callable[[Answer], T], **request: Any
    ) -> tuple[T, int]:
        """The mapped answer and the attempts it took."""

        attempts = 0

        async def once() -> T:
            nonlocal attempts
            attempts += 1
            answer = await send(
                self._http,
                method,
                url,
                check=self.check,
                provider=self._provider,
                gate=self._gate,
                resend_count=attempts - 1,
                refusals=self._refusals,
                timeout=self._timeout,
                **request,
            )
            return map_answer(answer)

        return await retrying(self._retry, once, count_retry, self._outage)
