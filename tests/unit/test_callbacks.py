"""Callback correlation, waiting with polling fallback, and the receiver's checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from consumer.callbacks.receiver import (
    MAX_CALLBACK_BYTES,
    AsyncTasks,
    CallbackReceiver,
    Correlator,
    prepare_relay,
    reduce_task_body,
)
from consumer.checks.providers.hive import parse_classification, parse_csam, parse_matches, raise_task_error
from consumer.checks.redaction import Redactor
from consumer.errors import ModerationError
from consumer.telemetry.metrics import REGISTRY


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

    async def relay(raw: bytes, task_id: str | None, headers: Any = None) -> None:
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


# --- hostile callbacks -------------------------------------------------------------------------

TOKEN = "s3cret"
Relayed = list[tuple[bytes, str | None]]


def received(outcome: str) -> float:
    return REGISTRY.get_sample_value("moderation_callbacks_received_total", {"outcome": outcome}) or 0.0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Relayed]]:
    """A receiver on 127.0.0.1 (relay limit 20 kB) and what it relayed."""
    relayed: Relayed = []

    async def relay(raw: bytes, task_id: str | None, headers: Any = None) -> None:
        relayed.append((raw, task_id))

    app = web.Application(client_max_size=MAX_CALLBACK_BYTES)
    CallbackReceiver(TOKEN, relay, relay_limit_bytes=20_000).routes(app)
    async with TestServer(app, host="127.0.0.1") as server:
        yield f"http://127.0.0.1:{server.port}/callbacks/{TOKEN}", relayed


def hive_body(task_id: str, frames: int, padding: int = 0) -> dict[str, Any]:
    """A Hive visual task body; ``padding`` bytes of fields nobody reads spread over it."""
    pad = "x" * (padding // (2 * frames + 2)) if padding else None
    return {
        "id": task_id,
        "code": 200,
        "project_id": 1,
        "metadata": pad,
        "status": [
            {
                "status": {"code": "0", "message": "SUCCESS"},
                "response": {
                    "input": {"id": task_id, "model": "vm", "model_version": 3, "media": {"blob": pad}},
                    "output": [
                        {
                            "time": t,
                            "bounding_poly": [{"vertices": pad}],
                            "classes": [
                                {"class": "general_nsfw", "score": (t % 10) / 10, "note": pad},
                                {"class": "general_not_nsfw_not_suggestive", "score": 0.5},
                            ],
                        }
                        for t in range(frames)
                    ],
                },
            }
        ],
        "from_cache": False,
    }


async def test_deeply_nested_json_is_refused_and_the_receiver_lives_on(receiver: tuple[str, Relayed]) -> None:
    url, relayed = receiver
    before = received("too_deep")
    async with httpx.AsyncClient() as http:
        for depth in (65, 5_000, 1_000_000):
            body = b'{"id": "t", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
            answer = await http.post(url, content=body)
            assert answer.status_code == 400 and "nested too deeply" in answer.text
        limit = b'{"id": "t", "x": ' + b"[" * 63 + b"]" * 63 + b"}"  # 64 levels: fine
        assert (await http.post(url, content=limit)).status_code == 200
    assert received("too_deep") - before == 3
    assert [t for _, t in relayed] == ["t"]


async def test_oversize_bodies_answer_413(receiver: tuple[str, Relayed]) -> None:
    url, relayed = receiver
    big = b'{"id": "t", "pad": "' + b"x" * MAX_CALLBACK_BYTES + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    before = received("oversize")
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, content=big)).status_code == 413
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, content=chunks())).status_code == 413
        assert (await http.post(url, json={"id": "after"})).status_code == 200
    assert received("oversize") - before == 2
    assert [t for _, t in relayed] == ["after"]


async def test_a_large_hive_callback_is_relayed_reduced_and_parses_the_same(
    receiver: tuple[str, Relayed],
) -> None:
    url, relayed = receiver
    body = hive_body("big", frames=30, padding=3_000_000)
    raw = orjson.dumps(body)
    assert 3_000_000 < len(raw) < MAX_CALLBACK_BYTES
    before = received("reduced")
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, content=raw)).status_code == 200
    assert received("reduced") - before == 1
    [(payload, task_id)] = relayed
    assert task_id == "big" and len(payload) < 20_000
    reduced = orjson.loads(payload)
    assert parse_classification(reduced) == parse_classification(body)
    assert "metadata" not in reduced and b"xxxx" not in payload
    assert reduced["status"][0]["response"]["input"] == {"model": "vm", "model_version": 3}


async def test_a_callback_too_large_even_reduced_relays_a_marker_and_the_task_is_polled(
    receiver: tuple[str, Relayed],
) -> None:
    url, relayed = receiver
    body = hive_body("huge", frames=2_000)
    before = received("too_large")
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, content=orjson.dumps(body))).status_code == 200
    assert received("too_large") - before == 1
    [(payload, task_id)] = relayed
    assert task_id == "huge" and orjson.loads(payload) == {"task_id": "huge", "too_large": True}

    correlator = Correlator()
    tasks = AsyncTasks(correlator, "http://cb", poll_after_s=300, poll_interval_s=0.01)
    polls: list[str] = []
    answers: list[dict[str, Any] | None] = [None, body]  # still processing once, then the result

    async def poll(task_id: str) -> dict[str, Any] | None:
        polls.append(task_id)
        return answers.pop(0)

    correlator.expect("huge")  # the waiter is registered before the marker comes
    waiting = asyncio.create_task(tasks.wait("huge", poll))
    assert correlator.deliver(orjson.loads(payload), len(payload)) == "completed"
    async with asyncio.timeout(10):
        assert await waiting == body
    assert polls == ["huge", "huge"]


async def test_a_marker_that_arrived_early_makes_the_waiter_poll_at_once() -> None:
    correlator = Correlator()
    assert correlator.deliver({"task_id": "t", "too_large": True}) == "early"
    tasks = AsyncTasks(correlator, "http://cb", poll_after_s=300, poll_interval_s=300)

    async def poll(task_id: str) -> dict[str, Any] | None:
        return {"id": task_id, "polled": True}

    async with asyncio.timeout(10):
        assert (await tasks.wait("t", poll))["polled"] is True


async def test_the_receiver_refuses_unusable_task_ids(receiver: tuple[str, Relayed]) -> None:
    url, relayed = receiver
    async with httpx.AsyncClient() as http:
        for body in ({"id": {"x": 1}}, {"id": True}, {"task_id": "t" * 300}, {"id": "a\nb"}, ["t"]):
            assert (await http.post(url, json=body)).status_code == 400, body
        assert (await http.post(url, json={"id": 7})).status_code == 200
    assert [t for _, t in relayed] == ["7"]


def test_a_caller_cannot_smuggle_the_marker_or_extra_fields() -> None:
    decision = prepare_relay(orjson.dumps({"id": "t", "too_large": True, "status": [], "secret": "s"}))
    assert decision.outcome == "reduced"
    assert orjson.loads(decision.payload) == {"id": "t", "status": []}


def test_reduced_bodies_keep_what_the_csam_and_index_parsers_read() -> None:
    csam = {
        "task_id": "c",
        "resent_on": "2026-01-01T00:00:00Z",
        "from_cache": True,
        "status": [
            {
                "status": {"code": "0", "message": "SUCCESS"},
                "response": {
                    "output": [
                        {
                            "time": 0,
                            "file": {"md5": "abc"},
                            "hashes": [
                                {
                                    "hashType": "videoSaferhashv0",
                                    "matchTypes": ["CSAM"],
                                    "matches": [
                                        {
                                            "matchDistance": 3,
                                            "sourceId": "thorn",
                                            "scenes": [{"startTimestamp": 1.0, "endTimestamp": 3.0, "x": 1}],
                                        }
                                    ],
                                }
                            ],
                        }
                    ]
                },
            }
        ],
    }
    index = {
        "id": "i",
        "status": [
            {
                "status": {"code": "0"},
                "response": {
                    "output": {
                        "shaHash": "f00",
                        "id": "entry-1",
                        "message": "added",
                        "matches": [
                            {
                                "id": "m1",
                                "similarity_score": 0.97,
                                "metadata": "tenant=t;case 1",
                                "url": None,
                                "z": 1,
                            }
                        ],
                    }
                },
            }
        ],
    }
    assert parse_csam(reduce_task_body(csam)) == parse_csam(csam)
    assert reduce_task_body(csam)["resent_on"] == csam["resent_on"] and reduce_task_body(csam)["from_cache"]
    assert parse_matches(reduce_task_body(index)) == parse_matches(index)
    assert reduce_task_body(index)["status"][0]["response"]["output"]["shaHash"] == "f00"


def test_a_malformed_status_never_reduces_to_success() -> None:
    body = {"id": "t", "status": [{"status": {"code": {"nested": "0"}, "message": ["m"]}}]}
    with pytest.raises(ModerationError, match="visual"):
        raise_task_error(reduce_task_body(body), "visual", redactor=Redactor())


async def test_the_early_buffer_is_bounded_in_bytes() -> None:
    c = Correlator(early_limit=100, early_limit_bytes=1_000)
    for i in range(3):
        assert c.deliver({"id": f"e{i}"}, size=400) == "early"
    assert c.early_bytes == 800  # e0 evicted: 1200 > 1000
    assert not c.expect("e0").done()
    assert c.expect("e1").done() and c.expect("e2").done()
    assert c.early_bytes == 0
    c.deliver({"id": "estimated", "pad": "x" * 2_000})  # its size estimated: larger than the bound
    assert c.early_bytes == 0 and not c.expect("estimated").done()


def test_a_relayed_callback_counts_only_with_the_receivers_signature() -> None:
    """Whoever can write the callback topic cannot complete a task: the listener checks the HMAC
    the receiver put on each relayed body."""
    from consumer.callbacks.relay import RELAY_SIGNATURE, relay_signature, signed

    key, value = b"shared-callback-token", b'{"task_id": "t1", "status": []}'
    good = relay_signature(key, value)
    assert signed(key, value, [("traceparent", b"00-x"), (RELAY_SIGNATURE, good)])
    assert not signed(key, value, None)
    assert not signed(key, value, [("traceparent", b"00-x")])
    assert not signed(key, value, [(RELAY_SIGNATURE, relay_signature(b"another token", value))])
    assert not signed(key, value + b" ", [(RELAY_SIGNATURE, good)])  # a tampered body
    assert not signed(key, value, [(RELAY_SIGNATURE, good), (RELAY_SIGNATURE, good)])
    assert not signed(key, value, [(RELAY_SIGNATURE, None)])
    assert not signed(key, None, [(RELAY_SIGNATURE, good)])


async def test_the_receivers_relay_signs_what_it_publishes() -> None:
    from consumer.callbacks.relay import RELAY_SIGNATURE, kafka_relay, signed

    sent: list[tuple[str, bytes | None, bytes, Any]] = []

    class RecordingSink:
        async def send(self, topic: str, key: bytes | None, value: bytes, headers: Any = None) -> None:
            sent.append((topic, key, value, headers))

    relay = kafka_relay(RecordingSink(), "moderation.callbacks", b"k")  # type: ignore[arg-type]
    await relay(b'{"task_id": "t1"}', "t1", [("traceparent", b"00-x")])
    (topic, key, value, headers) = sent[0]
    assert (topic, key) == ("moderation.callbacks", b"t1")
    assert signed(b"k", value, headers) and [n for n, _ in headers] == ["traceparent", RELAY_SIGNATURE]
