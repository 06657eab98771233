"""Pure provider etiquette: a token bucket, an adaptive (AIMD) concurrency limit and a circuit
breaker. The caller passes the clock; ``checks.providers.http.ProviderGate`` puts them on the wire
(and the development simulator rate-limits with the same bucket)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["AimdLimit", "BreakerState", "CircuitBreaker", "TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


@dataclass(slots=True)
class AimdLimit:
    """Concurrency that grows by one per window of successes while latency holds, shrinks gently
    when latency climbs, and halves on overload (429, 503, timeouts).

    "Holds" compares a fast moving average of latency with a slow one (the long-run baseline), so
    the ordinary spread of a provider's latency (log-normal tails) does not read as congestion;
    only a sustained rise does."""

    limit: float = 8.0
    minimum: float = 1.0
    maximum: float = 256.0
    tolerance: float = 2.0  # the fast average may reach this multiple of the baseline
    baseline: float = 0.0
    recent: float = 0.0

    def succeeded(self, latency: float) -> None:
        if self.baseline == 0.0:
            self.baseline = self.recent = latency
        self.baseline += 0.01 * (latency - self.baseline)
        self.recent += 0.2 * (latency - self.recent)
        if self.recent <= self.baseline * self.tolerance:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
        else:
            self.limit = max(self.minimum, self.limit * 0.98)

    def overloaded(self) -> None:
        self.limit = max(self.minimum, self.limit * 0.5)

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown_s`` lets one probe through;
    the probe's success closes it, its failure opens it again."""

    threshold: int = 5
    cooldown_s: float = 5.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def wait(self, now: float) -> float:
        """0 if a call may go now (taking the half-open probe slot), else seconds to wait."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return 0.0
        if state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return 0.0
        assert self.opened_at is not None
        return max(0.05, self.opened_at + self.cooldown_s - now) if state is BreakerState.OPEN else 0.05

    def record(self, success: bool, now: float) -> None:
        self.probing = False
        if success:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = now
