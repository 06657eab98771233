"""Declarative, bounded retries with full-jitter exponential backoff.

The policy is a value passed down from the settings (``processing.retry_*``); a policy with zero
delays (``RetryPolicy(n, 0, 0)``) never waits, which is how tests run retry paths instantly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from consumer.errors import RateLimitedError, TransientError

__all__ = ["RetryPolicy", "retrying"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))] after failed ``attempt``."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return (rng or random).uniform(0.0, cap)


async def retrying(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    on_retry: Callable[[TransientError], None] | None = None,
    outage: Callable[[], bool] | None = None,
) -> tuple[T, int]:
    """Run ``call`` until it succeeds or raises a non-transient error or attempts run out.

    Returns the result and the number of attempts made. Only ``TransientError`` is retried; a
    ``RateLimitedError`` waits at least its Retry-After (at most four times the policy's longest
    wait, so a policy without waits has none). A failure while ``outage()`` holds (the provider's
    circuit is open) spends no attempt: the next one waits for the circuit anyway, so a provider
    outage holds the upload instead of failing it closed.
    """
    attempt = 1
    spent = 0
    while True:
        try:
            return await call(), attempt
        except TransientError as exc:
            if outage is None or not outage():
                spent += 1
            if spent >= policy.attempts:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = policy.backoff(attempt)
            if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, policy.max_delay_s * 4))
            if delay > 0:
                await asyncio.sleep(delay)
            attempt += 1
