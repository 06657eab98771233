"""Callback correlation, waiting with polling fallback, and the receiver's checks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from consumer.callbacks import AsyncTasks, CallbackReceiver, Correlator


async def test_first_callback_completes_and_resends_are_duplicates() -> None:
    c = Correlator()
    waiter = c.expect("t1")
    assert c.deliver({"id": "t1", "n": 1}) == "completed"
    assert c.deliver({"id": "t1", "resent_on": "x", "from_cache": True}) == "duplicate"
    assert (await waiter)["n"] == 1
    c.forget("t1")
    assert c.deliver({"id": "t1"}) == "duplicate"


async def test_a_callback_before_the_task_id_is_known_is_kept() -> None:
    c = Correlator()
    assert c.deliver({"task_id": "t2", "n": 2}) == "early"
    assert (await c.expect("t2"))["n"] == 2


async def test_callbacks_without_task_id_and_the_early_buffer_is_bounded() -> None:
    c = Correlator(early_limit=2)
    assert c.deliver({"nothing": 1}) == "unknown"
    for i in range(5):
        c.deliver({"id": f"e{i}"})
    assert not c.expect("e0").done() and c.expect("e4").done()


async def test_wait_polls_when_no_callback_comes() -> None:
    tasks = AsyncTasks(Correlator(), "http://cb", poll_after_s=0.01, poll_interval_s=0.01)
    answers: list[dict[str, Any] | None] = [None, None, {"id": "t", "done": True}]

    async def poll(task_id: str) -> dict[str, Any] | None:
        return answers.pop(0)

    assert (await tasks.wait("t", poll))["done"] is True
    assert answers == []


async def test_wait_prefers_the_callback_over_polling() -> None:
    correlator = Correlator()
    tasks = AsyncTasks(correlator, "http://cb", poll_after_s=30, poll_interval_s=30)

    async def poll(task_id: str) -> dict[str, Any] | None:
        raise AssertionError("polled although the callback came")

    waiting = asyncio.create_task(tasks.wait("t", poll))
    correlator.deliver({"id": "t", "via": "callback"})
    assert (await waiting)["via"] == "callback"


async def test_receiver_checks_token_and_body_then_relays() -> None:
    relayed: list[tuple[bytes, str | None]] = []

    async def relay(raw: bytes, task_id: str | None) -> None:
        relayed.append((raw, task_id))

    app = web.Application()
    CallbackReceiver("s3cret", relay).routes(app)
    async with TestServer(app, host="127.0.0.1") as server, httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{server.port}/callbacks"
        assert (await http.post(f"{base}/wrong", json={"id": "t"})).status_code == 404
        assert (await http.post(f"{base}/s3cret", content=b"not json")).status_code == 400
        assert (await http.post(f"{base}/s3cret", json={"no": "id"})).status_code == 400
        ok = await http.post(f"{base}/s3cret", json={"id": "t9", "status": []})
        assert ok.status_code == 200
    assert [t for _, t in relayed] == ["t9"]
