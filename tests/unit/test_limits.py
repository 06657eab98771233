from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.limits import AimdLimit, BreakerState, CircuitBreaker, TokenBucket


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2, burst=2)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == 0.5
    assert bucket.take(0.5) == 0


@given(st.lists(st.sampled_from(["ok", "slow", "overload"]), max_size=300))
def test_aimd_limit_stays_within_bounds(events: list[str]) -> None:
    limit = AimdLimit(limit=4, minimum=1, maximum=32)
    for e in events:
        if e == "ok":
            limit.succeeded(0.05)
        elif e == "slow":
            limit.succeeded(5.0)
        else:
            limit.overloaded()
        assert 1 <= limit.limit <= 32 and 1 <= limit.allowed <= 32


def test_aimd_grows_while_latency_holds_and_halves_on_overload() -> None:
    limit = AimdLimit(limit=4, maximum=100)
    for _ in range(200):
        limit.succeeded(0.05)
    grown = limit.limit
    assert grown > 10
    limit.overloaded()
    assert limit.limit == grown / 2


def test_breaker_opens_probes_and_closes() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=10)
    for t in range(3):
        assert breaker.wait(t) == 0
        breaker.record(False, t)
    assert breaker.state(3) is BreakerState.OPEN and breaker.wait(3) > 0
    assert breaker.state(13) is BreakerState.HALF_OPEN
    assert breaker.wait(13) == 0 and breaker.wait(13) > 0  # one probe at a time
    breaker.record(False, 13)
    assert breaker.state(14) is BreakerState.OPEN
    assert breaker.wait(23) == 0
    breaker.record(True, 23)
    assert breaker.state(23) is BreakerState.CLOSED and breaker.wait(23) == 0
