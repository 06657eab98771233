"""Hive clients over httpx.MockTransport: request shape, error classes, retries, parsing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from consumer.errors import PermanentError, RateLimitedError, TransientError
from consumer.httpclient import HttpClient
from consumer.media import Media
from consumer.providers.hive import (
    HiveClassifier,
    HiveCustomIndex,
    HiveHashMatcher,
    HiveTasks,
    HiveTransport,
    parse_csam,
)
from consumer.retry import RetryPolicy

KEY = "hive-secret-key"
Handler = Callable[[httpx.Request], httpx.Response]


def task_body(output: Any, code: str | int = "0", message: str = "SUCCESS") -> dict[str, Any]:
    return {
        "id": "t1",
        "code": 200,
        "status": [
            {
                "status": {"code": code, "message": message},
                "response": {"input": {"model": "m", "model_version": 3}, "output": output},
            }
        ],
    }


def transport(handler: Handler, attempts: int = 3, check: str = "visual") -> HiveTasks:
    http = HttpClient(httpx.MockTransport(handler))
    return HiveTasks(
        HiveTransport(http, "http://hive.test", SecretStr(KEY), check, RetryPolicy(attempts, 0.01, 0.02))
    )


def sequence(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler, seen


async def test_classify_sends_token_and_media_and_parses_frames() -> None:
    handler, seen = sequence(
        httpx.Response(
            200,
            json=task_body(
                [
                    {"time": 0, "classes": [{"class": "general_nsfw", "score": 0.2}]},
                    {"time": 1, "classes": [{"class": "general_nsfw", "score": 0.7}]},
                ]
            ),
        )
    )
    checked = await HiveClassifier(transport(handler)).classify(Media(data=b"img", content_type="image/png"))
    request = seen[0]
    assert request.url.path == "/api/v1/task/sync"
    assert request.headers["authorization"] == f"token {KEY}"
    assert b'name="media"' in request.content and b"img" in request.content
    assert [(f.time, f.scores["general_nsfw"]) for f in checked.value] == [(0.0, 0.2), (1.0, 0.7)]
    assert (checked.model, checked.model_version, checked.attempts) == ("m", "3", 1)


async def test_text_and_url_use_their_form_fields() -> None:
    handler, seen = sequence(httpx.Response(200, json=task_body([{"time": 0, "classes": []}])))
    classifier = HiveClassifier(transport(handler))
    await classifier.classify("hello")
    await classifier.classify(Media(url="http://127.0.0.1/x.jpg"))
    assert b"text_data=hello" in seen[0].content
    assert b"url=http%3A%2F%2F127.0.0.1%2Fx.jpg" in seen[1].content


@pytest.mark.parametrize("code", ["0", 200, "200", 0])
async def test_both_status_code_forms_are_success(code: str | int) -> None:
    handler, _ = sequence(httpx.Response(200, json=task_body([], code=code)))
    assert (await HiveClassifier(transport(handler)).classify("x")).value == []


async def test_rate_limit_is_retried_honouring_retry_after() -> None:
    handler, seen = sequence(
        httpx.Response(429, json={"return_code": 429, "message": "slow down"}, headers={"retry-after": "0"}),
        httpx.Response(200, json=task_body([])),
    )
    checked = await HiveClassifier(transport(handler)).classify("x")
    assert len(seen) == 2 and checked.attempts == 2


async def test_exhausted_retries_raise_transient_with_attempts() -> None:
    handler, seen = sequence(httpx.Response(503, json={"return_code": 503, "message": "maintenance"}))
    with pytest.raises(TransientError, match="Hive HTTP 503: maintenance") as info:
        await HiveClassifier(transport(handler, attempts=3)).classify("x")
    assert len(seen) == 3 and info.value.attempts == 3  # type: ignore[attr-defined]


async def test_429_without_retries_left_is_rate_limited_error() -> None:
    handler, _ = sequence(
        httpx.Response(429, json={"return_code": 429, "message": "too many"}, headers={"retry-after": "7"})
    )
    with pytest.raises(RateLimitedError) as info:
        await HiveClassifier(transport(handler, attempts=1)).classify("x")
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 403, 404, 405])
async def test_client_errors_are_permanent_and_not_retried(status: int) -> None:
    handler, seen = sequence(httpx.Response(status, json={"return_code": status, "message": "nope"}))
    with pytest.raises(PermanentError) as info:
        await HiveClassifier(transport(handler)).classify("x")
    assert len(seen) == 1 and info.value.status == status
    assert KEY not in str(info.value)


@pytest.mark.parametrize(("code", "error"), [("2001", TransientError), ("3002", PermanentError)])
async def test_task_level_codes(code: str, error: type[Exception]) -> None:
    handler, _ = sequence(httpx.Response(200, json=task_body([], code=code, message="task failed")))
    with pytest.raises(error, match=f"task error {code}: task failed"):
        await HiveClassifier(transport(handler, attempts=1)).classify("x")


async def test_timeouts_and_connection_errors_are_transient() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    with pytest.raises(TransientError, match="timeout calling Hive"):
        await HiveClassifier(transport(boom, attempts=2)).classify("x")


async def test_non_json_success_is_transient() -> None:
    handler, _ = sequence(httpx.Response(200, content=b"<html>gateway</html>"))
    with pytest.raises(TransientError, match="not JSON"):
        await HiveClassifier(transport(handler, attempts=1)).classify("x")


def test_parse_csam_without_hashes_is_no_match() -> None:
    assert not parse_csam(task_body([{"time": 0, "file": {"md5": "x"}}])).result.matched


def test_parse_csam_takes_the_closest_match_and_scenes() -> None:
    body = task_body(
        [
            {
                "hashes": [
                    {"hashType": "md5", "matches": [{"matchDistance": 0}]},
                    {
                        "hashType": "videoSaferhashv0",
                        "matches": [
                            {"matchDistance": 3, "scenes": [{"startTimestamp": 1.5, "endTimestamp": 4.0}]}
                        ],
                    },
                ]
            }
        ]
    )
    result = parse_csam(body).result
    assert (result.matched, result.hash_type, result.match_distance) == (True, "md5", 0)
    assert [(s.start_seconds, s.end_seconds) for s in result.scenes] == [(1.5, 4.0)]


async def test_hash_matcher_uses_the_csam_key_transport() -> None:
    handler, _ = sequence(
        httpx.Response(
            200, json=task_body([{"hashes": [{"hashType": "pdq", "matches": [{"matchDistance": 9}]}]}])
        )
    )
    checked = await HiveHashMatcher(transport(handler, check="csam")).match(Media(data=b"x"))
    assert checked.value.result.matched and checked.value.result.match_distance == 9


async def test_custom_index_scopes_matches_to_the_tenant() -> None:
    body = {
        "task_id": "q",
        "response": {
            "output": {
                "matches": [
                    {"id": "1", "similarity_score": 0.99, "metadata": "tenant=other;theirs"},
                    {"id": "2", "similarity_score": 0.97, "metadata": "tenant=mine;banned"},
                    {"id": "3", "similarity_score": 0.91, "metadata": "untagged"},
                ]
            }
        },
    }
    handler, seen = sequence(httpx.Response(200, json=body))
    checked = await HiveCustomIndex(transport(handler, check="similarity")).query(Media(data=b"x"), "mine")
    assert [(m.match_id, m.metadata) for m in checked.value] == [("2", "banned"), ("3", "untagged")]
    assert seen[0].url.path == "/api/v2/custom_index/query/sync"


async def test_custom_index_add_tags_the_tenant() -> None:
    handler, seen = sequence(
        httpx.Response(
            200,
            json={
                "status": [
                    {"status": {"code": "0"}, "response": {"output": {"status": "Success", "shaHash": "abc"}}}
                ]
            },
        )
    )
    sha = await HiveCustomIndex(transport(handler)).add(Media(data=b"x"), "t1", "confirmed BLOCK")
    assert sha == "abc"
    assert b"tenant=t1;confirmed BLOCK" in seen[0].content
