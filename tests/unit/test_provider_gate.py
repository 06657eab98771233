"""ProviderGate over httpx.MockTransport: concurrency bound, AIMD reaction, breaker waits."""

from __future__ import annotations

import asyncio

import httpx

from consumer.checks.providers.http import ProviderGate, deadline_scope, send
from consumer.core.limits import AimdLimit, BreakerState, CircuitBreaker
from consumer.transports.httpclient import HttpxClient


async def test_concurrency_never_exceeds_the_limit() -> None:
    active = peak = 0
    release = asyncio.Event()
    reached = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == 2:
            reached.set()
        await release.wait()
        active -= 1
        return httpx.Response(200)

    gate = ProviderGate("visual", AimdLimit(limit=2, maximum=2))
    async with HttpxClient(httpx.MockTransport(handler)) as http:
        calls = [
            asyncio.create_task(send(http, "GET", "http://p.test/", check="visual", provider="P", gate=gate))
            for _ in range(5)
        ]
        await asyncio.wait_for(reached.wait(), 5)
        await asyncio.wait(calls, timeout=0.05)  # the other three stay queued at the gate
        assert active == 2
        release.set()
        await asyncio.gather(*calls)
    assert peak == 2


async def test_rate_limited_answers_halve_the_limit() -> None:
    gate = ProviderGate("text", AimdLimit(limit=16))

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429)

    async with HttpxClient(httpx.MockTransport(handler)) as http:
        await send(http, "GET", "http://p.test/", check="text", provider="P", gate=gate)
    assert gate.limit.limit == 8


async def test_an_open_breaker_makes_callers_wait_for_the_probe() -> None:
    now = [0.0]
    gate = ProviderGate("csam", breaker=CircuitBreaker(threshold=2, cooldown_s=0.2), clock=lambda: now[0])
    answers = [503, 503, 200]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers.pop(0))

    async with HttpxClient(httpx.MockTransport(handler)) as http:
        for _ in range(2):
            await send(http, "GET", "http://p.test/", check="csam", provider="P", gate=gate)
        assert gate.breaker.state(now[0]) is BreakerState.OPEN
        waiting = asyncio.create_task(
            send(http, "GET", "http://p.test/", check="csam", provider="P", gate=gate)
        )
        await asyncio.wait({waiting}, timeout=0.05)
        assert not waiting.done()  # waits instead of failing
        now[0] = 1.0  # the cooldown passes: the waiting call becomes the probe
        assert (await waiting).status_code == 200
    assert gate.breaker.state(now[0]) is BreakerState.CLOSED


async def test_waiting_on_an_open_breaker_does_not_spend_the_checks_deadline() -> None:
    now = [0.0]
    gate = ProviderGate("visual", breaker=CircuitBreaker(threshold=1, cooldown_s=0.1), clock=lambda: now[0])
    gate.breaker.record(False, now[0])  # open
    assert gate.is_open

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def under_deadline() -> int:
        async with asyncio.timeout(0.12) as scope:  # as the pipeline runs a check
            token = deadline_scope.set(scope)
            try:
                resp = await send(http, "GET", "http://p.test/", check="visual", provider="P", gate=gate)
            finally:
                deadline_scope.reset(token)
        return resp.status_code

    async with HttpxClient(httpx.MockTransport(handler)) as http:
        call = asyncio.create_task(under_deadline())
        await asyncio.wait({call}, timeout=0.4)  # well past the 0.12 s deadline: still waiting
        assert not call.done()
        now[0] = 10.0  # the cooldown passes; the probe goes out and succeeds
        assert await call == 200
    assert not gate.is_open


async def test_the_limit_returns_to_its_pre_outage_value_when_the_circuit_closes() -> None:
    now = [0.0]
    gate = ProviderGate(
        "csam", AimdLimit(limit=32), breaker=CircuitBreaker(threshold=2, cooldown_s=1.0), clock=lambda: now[0]
    )
    answers = [503, 503, 503, 503, 200]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers.pop(0))

    async with HttpxClient(httpx.MockTransport(handler)) as http:
        for _ in range(5):
            now[0] += 2.0  # each call after the cooldown: a probe while the circuit is open
            await send(http, "GET", "http://p.test/", check="csam", provider="P", gate=gate)
    assert gate.breaker.state(now[0]) is BreakerState.CLOSED
    assert gate.limit.limit >= 32
