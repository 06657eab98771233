from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.checks.retry import RetryPolicy, retrying
from consumer.errors import PermanentError, RateLimitedError, TransientError

NO_WAIT = RetryPolicy(attempts=5, base_delay_s=0, max_delay_s=0)


@given(attempt=st.integers(min_value=1, max_value=30), seed=st.integers())
def test_full_jitter_backoff_stays_within_its_cap(attempt: int, seed: int) -> None:
    policy = RetryPolicy(attempts=5, base_delay_s=0.1, max_delay_s=2.0)
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0.0 <= delay <= min(2.0, 0.1 * 2 ** (attempt - 1))


async def test_retries_transient_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("try again")
        return "ok"

    assert await retrying(NO_WAIT, flaky) == ("ok", 3)


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def broken() -> str:
        nonlocal calls
        calls += 1
        raise PermanentError("no")

    with pytest.raises(PermanentError):
        await retrying(NO_WAIT, broken)
    assert calls == 1


async def test_failures_during_an_outage_spend_no_attempt() -> None:
    calls = 0
    circuit_open = True

    async def down_then_up() -> str:
        nonlocal calls, circuit_open
        calls += 1
        if calls < 6:
            raise TransientError("503")
        circuit_open = False
        return "ok"

    # two attempts only, yet five failures while the circuit is open do not fail the call
    assert await retrying(RetryPolicy(2, 0, 0), down_then_up, outage=lambda: circuit_open) == ("ok", 6)
    circuit_open = False
    calls = 0
    with pytest.raises(TransientError):  # outside an outage the bound holds
        await retrying(RetryPolicy(2, 0, 0), down_then_up, outage=lambda: circuit_open)
    assert calls == 2


async def test_a_policy_without_waits_never_waits_even_for_retry_after() -> None:
    """Tests choose instant retries by the policy they pass: there is no process-wide switch."""
    calls = 0

    async def limited() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RateLimitedError("429", retry_after=3600)
        return "ok"

    async with asyncio.timeout(5):  # an hour's Retry-After, honoured, would blow this deadline
        assert await retrying(RetryPolicy(3, 0, 0), limited) == ("ok", 3)
