"""Hive clients over httpx.MockTransport: request shape, error classes, retries, parsing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from consumer.checks.media import Media
from consumer.checks.providers.hive import (
    HiveClassifier,
    HiveCustomIndex,
    HiveHashMatcher,
    HiveTasks,
    HiveTransport,
    parse_csam,
)
from consumer.checks.providers.hive_answers import parse_classification
from consumer.checks.redaction import Redactor
from consumer.checks.retry import RetryPolicy
from consumer.core import index_metadata
from consumer.errors import PermanentError, RateLimitedError, TransientError
from consumer.policy.decision import CheckResults, decide
from consumer.policy.tenants import load_policies
from consumer.transports.httpclient import HttpxClient

KEY = "hive-secret-key"
META = index_metadata.encode
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


ONE_FRAME = [{"time": 0, "classes": [{"class": "a", "score": 0.5}]}]


async def test_a_classification_without_class_scores_fails_closed() -> None:
    """A classifier answer with no scores cannot be told from a benign one: never an empty result."""
    from consumer.checks.providers.hive import parse_classification
    from consumer.errors import ProviderAnswerError

    for output in (
        [],
        [{"time": 0}],
        [{"time": 0, "classes": []}],
        [{"time": 0, "hashes": [{"matches": []}]}],
    ):
        with pytest.raises(ProviderAnswerError):
            parse_classification(task_body(output), check="text")


def transport(handler: Handler, attempts: int = 3, check: str = "visual") -> HiveTasks:
    http = HttpxClient(httpx.MockTransport(handler))
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
    handler, seen = sequence(httpx.Response(200, json=task_body(ONE_FRAME)))
    classifier = HiveClassifier(transport(handler))
    await classifier.classify("hello")
    await classifier.classify(Media(url="http://127.0.0.1/x.jpg"))
    assert b"text_data=hello" in seen[0].content
    assert b"url=http%3A%2F%2F127.0.0.1%2Fx.jpg" in seen[1].content


@pytest.mark.parametrize("code", ["0", 200, "200", 0])
async def test_both_status_code_forms_are_success(code: str | int) -> None:
    handler, _ = sequence(httpx.Response(200, json=task_body(ONE_FRAME, code=code)))
    assert (await HiveClassifier(transport(handler)).classify("x")).value[0].scores == {"a": 0.5}


async def test_rate_limit_is_retried_honouring_retry_after() -> None:
    handler, seen = sequence(
        httpx.Response(429, json={"return_code": 429, "message": "slow down"}, headers={"retry-after": "0"}),
        httpx.Response(200, json=task_body(ONE_FRAME)),
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


def test_hive_marks_the_classes_that_say_nothing_was_found() -> None:
    """Hive's naming (no_x, not_x, x_not_y) is read here: the policy is told which classes are
    benign and keeps them out of the summary, knowing nothing of any vendor's names."""
    frames = parse_classification(
        task_body(
            [
                {
                    "time": 0,
                    "classes": [{"class": "no_gun", "score": 0.9}, {"class": "gun_in_hand", "score": 0.1}],
                },
                {"time": 1, "classes": [{"class": "general_not_nsfw_not_suggestive", "score": 0.8}]},
            ]
        )
    )
    assert all(f.benign == {"no_gun", "general_not_nsfw_not_suggestive"} for f in frames)
    summary = decide(load_policies().default, CheckResults(classifications={"visual": frames})).classification
    assert summary is not None and [c.class_name for c in summary.top_classes] == ["gun_in_hand"]
    combined = task_body([{"time": 0, "classes": [{"class": "csam", "score": 0.1}]}])
    assert parse_csam(combined).classes[0].benign == frozenset()


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
                    {
                        "id": "1",
                        "similarity_score": 0.99,
                        "metadata": index_metadata.encode("other", "theirs"),
                    },
                    {
                        "id": "2",
                        "similarity_score": 0.97,
                        "metadata": index_metadata.encode("mine", "banned"),
                    },
                    {"id": "3", "similarity_score": 0.91, "metadata": "untagged"},
                    {"id": "4", "similarity_score": 0.95, "metadata": "tenant=mine;old format, forgeable"},
                    {"id": "5", "similarity_score": 0.93, "metadata": index_metadata.encode("mine2", "x")},
                    {
                        "id": "6",
                        "similarity_score": 0.92,
                        "metadata": '{"v":1,"tenant":"mine","note":"a","x":1}',
                    },
                ]
            }
        },
    }
    handler, seen = sequence(httpx.Response(200, json=body))
    checked = await HiveCustomIndex(transport(handler, check="similarity")).query(Media(data=b"x"), "mine")
    assert [(m.match_id, m.metadata) for m in checked.value] == [("2", "banned")]
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
    assert index_metadata.encode("t1", "confirmed BLOCK").encode() in seen[0].content


def _query_answer(*owners: str | None) -> httpx.Response:
    matches = [
        {"id": str(i), "similarity_score": 0.99, "metadata": index_metadata.encode(o, "n") if o else "x"}
        for i, o in enumerate(owners)
    ]
    return httpx.Response(200, json={"task_id": "q", "response": {"output": {"matches": matches}}})


QUERY = "/api/v2/custom_index/query/sync"
_REMOVED = httpx.Response(
    200, json=task_body({"status": "Success", "id": "r1", "shaHash": "abc", "message": "removed"})
)


async def test_custom_index_remove_touches_only_the_tenants_own_entry() -> None:
    handler, seen = sequence(_query_answer("mine"), _REMOVED)
    assert (
        await HiveCustomIndex(transport(handler, check="similarity")).remove(Media(data=b"x"), "mine") == "r1"
    )
    assert [r.url.path for r in seen] == [
        "/api/v2/custom_index/query/sync",
        "/api/v2/custom_index/remove/sync",
    ]


@pytest.mark.parametrize("owners", [(), ("other",), (None,), ("other", None)])
async def test_custom_index_remove_of_an_image_the_tenant_does_not_own_removes_nothing(
    owners: tuple[str | None, ...],
) -> None:
    handler, seen = sequence(_query_answer(*owners), _REMOVED)
    assert (
        await HiveCustomIndex(transport(handler, check="similarity")).remove(Media(data=b"x"), "mine") is None
    )
    assert [r.url.path for r in seen] == [QUERY]


async def test_custom_index_remove_of_an_image_another_tenant_also_owns_is_refused() -> None:
    """Hive removes by image, whoever added it: removing ours could remove theirs."""
    handler, seen = sequence(_query_answer("mine", "other"), _REMOVED)
    with pytest.raises(PermanentError, match="another tenant"):
        await HiveCustomIndex(transport(handler, check="similarity")).remove(Media(data=b"x"), "mine")
    assert [r.url.path for r in seen] == [QUERY]


# --- answers of the right status and the wrong shape ------------------------------------------------

SENTINEL = "SENTINEL-VALUE-7"


def classes_of(*entries: Any) -> dict[str, Any]:
    return task_body(
        [{"time": 0, "classes": [{"class": "ok", "score": 0.1}]}, {"time": 1, "classes": list(entries)}]
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (classes_of({"class": "nsfw", "score": SENTINEL}), "status[0].response.output[1].classes[0].score"),
        (
            classes_of({"class": "nsfw", "score": float("nan")}),
            "status[0].response.output[1].classes[0].score",
        ),
        (
            classes_of({"class": "nsfw", "score": float("inf")}),
            "status[0].response.output[1].classes[0].score",
        ),
        (classes_of({"class": "nsfw", "score": 1.5}), "status[0].response.output[1].classes[0].score"),
        (classes_of({"class": "nsfw", "score": True}), "status[0].response.output[1].classes[0].score"),
        (classes_of({"class": "nsfw"}), "status[0].response.output[1].classes[0].score"),
        (classes_of({"class": 7, "score": 0.5}), "status[0].response.output[1].classes[0].class"),
        (classes_of("nsfw"), "status[0].response.output[1].classes[0]"),
        (task_body([SENTINEL]), "status[0].response.output[0]"),
        (task_body([{"time": SENTINEL, "classes": []}]), "status[0].response.output[0].time"),
        (task_body([{"time": -1, "classes": []}]), "status[0].response.output[0].time"),
        (task_body([{"time": float("inf")}]), "status[0].response.output[0].time"),
        (task_body([{"classes": {"class": "x"}}]), "status[0].response.output[0].classes"),
        (task_body(SENTINEL), "status[0].response.output"),
        (task_body(None), "status[0].response.output"),
        ({"status": SENTINEL}, "status"),
        ({"status": []}, "status"),
        ({"status": [SENTINEL]}, "status[0]"),
        ({"status": [{"status": SENTINEL}]}, "status[0].status"),
        ({"status": [{"status": {"code": [0]}}]}, "status[0].status.code"),
        ({"status": [{"status": {"code": SENTINEL}}]}, "status[0].status.code"),
        ({"status": [{"status": {"code": "0"}, "response": [SENTINEL]}]}, "status[0].response"),
        ({"status": [{"status": {"code": "0"}}]}, "status[0].response"),
    ],
)
def test_a_malformed_classification_answer_names_the_field_not_the_value(body: Any, field: str) -> None:
    from consumer.checks.providers.hive import parse_classification, raise_task_error
    from consumer.errors import ProviderAnswerError

    with pytest.raises(ProviderAnswerError) as info:
        raise_task_error(body, "visual", redactor=Redactor())  # as check_response does first
        parse_classification(body, check="visual")
    assert info.value.field == field
    assert str(info.value).startswith(f"visual: Hive answer: {field} ")
    assert SENTINEL not in str(info.value) and "nan" not in str(info.value).lower()


async def test_a_malformed_answer_over_http_is_retried_then_fails_closed() -> None:
    from consumer.errors import ProviderAnswerError

    handler, seen = sequence(httpx.Response(200, json=classes_of({"class": "nsfw", "score": SENTINEL})))
    with pytest.raises(ProviderAnswerError) as info:
        await HiveClassifier(transport(handler, attempts=2)).classify("x")
    assert len(seen) == 2 and isinstance(info.value, TransientError) and info.value.check == "visual"
    assert info.value.field == "status[0].response.output[1].classes[0].score"


@pytest.mark.parametrize(
    ("output", "field"),
    [
        ([{"hashes": SENTINEL}], "status[0].response.output[0].hashes"),
        (
            [{"hashes": [{"hashType": "pdq", "matches": [{"matchDistance": "3"}]}]}],
            "matches[0].matchDistance",
        ),
        ([{"hashes": [{"hashType": "pdq", "matches": [{"matchDistance": -1}]}]}], "matches[0].matchDistance"),
        (
            [{"hashes": [{"hashType": "pdq", "matches": [{"matchDistance": 2.5}]}]}],
            "matches[0].matchDistance",
        ),
        (
            [{"hashes": [{"hashType": "pdq", "matches": [{"matchDistance": 2**40}]}]}],
            "matches[0].matchDistance",
        ),
        ([{"hashes": [{"hashType": 1, "matches": []}]}], "hashes[0].hashType"),
        ([{"hashes": [{"hashType": "pdq", "matches": {}}]}], "hashes[0].matches"),
        ([{"hashes": [{"hashType": "pdq", "matches": [SENTINEL]}]}], "hashes[0].matches[0]"),
        (
            [
                {
                    "hashes": [
                        {
                            "hashType": "v",
                            "matches": [{"matchDistance": 1, "scenes": [{"startTimestamp": 1}]}],
                        }
                    ]
                }
            ],
            "scenes[0].endTimestamp",
        ),
        (
            [
                {
                    "hashes": [
                        {
                            "hashType": "v",
                            "matches": [{"scenes": [{"startTimestamp": 4, "endTimestamp": 2}]}],
                        }
                    ]
                }
            ],
            "scenes[0].endTimestamp",
        ),
        ([{"classes": [{"class": "csam", "score": "high"}]}], "output[0].classes[0].score"),
    ],
)
def test_a_malformed_csam_answer_names_the_field(output: Any, field: str) -> None:
    from consumer.errors import ProviderAnswerError

    with pytest.raises(ProviderAnswerError, match=r"^csam: Hive answer: ") as info:
        parse_csam(task_body(output), check="csam")
    assert info.value.field.endswith(field) and SENTINEL not in str(info.value)


def test_csam_answers_fail_closed_never_as_no_match() -> None:
    from consumer.errors import ProviderAnswerError

    for body in ({}, {"status": [{"status": {"code": "0"}, "response": {}}]}, task_body(None)):
        with pytest.raises(ProviderAnswerError):
            parse_csam(body, check="csam")


@pytest.mark.parametrize(
    "match",
    [
        {"id": None, "similarity_score": 0.9},
        {"id": "a", "similarity_score": "0.9"},
        {"id": "a", "similarity_score": -0.1},
        {"id": "a", "similarity_score": 0.9, "metadata": ["x"]},
        {"id": "a", "similarity_score": 0.9, "url": 3},
        {"id": "a", "similarity_score": 0.9, "metadata": "\ud800"},  # json.loads lets lone surrogates in
        SENTINEL,
    ],
)
def test_a_malformed_index_match_is_an_answer_error(match: Any) -> None:
    from consumer.checks.providers.hive import parse_matches
    from consumer.errors import ProviderAnswerError

    body = {"status": {"code": "0"}, "response": {"output": {"matches": [match]}}}
    with pytest.raises(ProviderAnswerError, match=r"response\.output\.matches\[0\]"):
        parse_matches(body, check="similarity")


def test_tolerated_variants_still_parse() -> None:
    from consumer.checks.providers.hive import parse_classification, parse_matches, raise_task_error

    one_object = task_body({"time": 2, "classes": [{"class": "a", "score": 1}]})  # output as one object
    assert [(f.time, dict(f.scores)) for f in parse_classification(one_object)] == [(2.0, {"a": 1.0})]
    no_time = task_body(
        [{"classes": [{"class": "a", "score": 0}]}, {"time": None, "classes": [{"class": "a", "score": 0}]}]
    )
    assert [f.time for f in parse_classification(no_time)] == [0.0, 0.0]
    no_status = {"response": {"output": {"matches": None}}}  # custom index, no status at all
    raise_task_error(no_status, "similarity", redactor=Redactor())
    assert parse_matches(no_status) == []
    int_ids = {
        "status": {"code": 200},
        "response": {"output": {"matches": [{"id": 5, "similarity_score": 1}]}},
    }
    assert parse_matches(int_ids)[0].match_id == "5"
    assert not parse_csam(task_body([{"time": 0, "hashes": None}])).result.matched


async def test_a_malformed_answer_is_retried_and_a_good_one_wins() -> None:
    handler, _ = sequence(
        httpx.Response(200, json=classes_of({"class": "nsfw", "score": "high"})),
        httpx.Response(200, json=task_body([{"time": 0, "classes": [{"class": "nsfw", "score": 0.4}]}])),
    )
    checked = await HiveClassifier(transport(handler)).classify("x")
    assert checked.attempts == 2 and checked.value[0].scores == {"nsfw": 0.4}


@pytest.mark.parametrize("content", [b"[1, 2]", b'"ok"', b"42", b"\xff\xfe{}", b"{" * 5000, b"", b"null"])
async def test_bodies_that_are_not_an_object_are_answer_errors(content: bytes) -> None:
    from consumer.errors import ProviderAnswerError

    handler, _ = sequence(httpx.Response(200, content=content))
    with pytest.raises(ProviderAnswerError):
        await HiveClassifier(transport(handler, attempts=1)).classify("x")


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe", b'{"message": ["x"]}', b'{"message": 7}'])
async def test_error_bodies_of_any_shape_map_to_the_status(content: bytes) -> None:
    handler, _ = sequence(httpx.Response(403, content=content))
    with pytest.raises(PermanentError, match="Hive HTTP 403: Forbidden"):
        await HiveClassifier(transport(handler, attempts=1)).classify("x")


async def test_a_403_echoing_the_key_gives_an_error_without_it() -> None:
    echo = f"Invalid key in header Authorization: token {KEY} (project 7); got {KEY}"
    handler, _ = sequence(httpx.Response(403, json={"return_code": 403, "message": echo}))
    with pytest.raises(PermanentError) as info:
        await HiveClassifier(transport(handler)).classify("x")
    assert KEY not in str(info.value) and "[redacted]" in str(info.value)


async def test_a_task_error_echoing_the_key_gives_an_error_without_it() -> None:
    body = task_body([], code="3002", message=f"cannot fetch media with header authorization: token {KEY}")
    handler, _ = sequence(httpx.Response(200, json=body))
    with pytest.raises(PermanentError, match="task error 3002") as info:
        await HiveClassifier(transport(handler, attempts=1)).classify("x")
    assert KEY not in str(info.value)


async def test_a_huge_error_message_is_capped() -> None:
    handler, _ = sequence(httpx.Response(400, json={"message": "x" * 100_000}))
    with pytest.raises(PermanentError) as info:
        await HiveClassifier(transport(handler)).classify("x")
    assert len(str(info.value)) < 400


class _FakeTasks:
    """Stands in for the callback receiver: answers every wait with ``body``."""

    callback_url = "http://me.test/callbacks/t"

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.waited: list[str] = []

    def callback_target(self) -> str:
        return self.callback_url

    async def wait(self, task_id: str, poll: Any) -> dict[str, Any]:
        self.waited.append(task_id)
        return self.body


@pytest.mark.parametrize(
    "ack", [{"message": "no id"}, {"task_id": "../../admin"}, {"task_id": ["t"]}, {"id": True}]
)
async def test_an_async_acknowledgement_without_a_usable_task_id_is_an_answer_error(
    ack: dict[str, Any],
) -> None:
    from consumer.errors import ProviderAnswerError

    handler, _ = sequence(httpx.Response(200, json=ack))
    fake = _FakeTasks(task_body([]))
    tasks = HiveTasks(transport(handler, attempts=1).transport, tasks=fake)  # type: ignore[arg-type]
    with pytest.raises(ProviderAnswerError, match="task_id"):
        await HiveClassifier(tasks, asynchronous=True).classify("x")
    assert fake.waited == []


async def test_async_callback_bodies_are_checked_like_sync_ones() -> None:
    from consumer.errors import ProviderAnswerError

    handler, _ = sequence(httpx.Response(200, json={"task_id": "dd52c0d0-9ec7", "message": "received"}))
    fake = _FakeTasks(classes_of({"class": "nsfw", "score": float("nan")}))
    tasks = HiveTasks(transport(handler, attempts=1).transport, tasks=fake)  # type: ignore[arg-type]
    with pytest.raises(ProviderAnswerError, match=r"output\[1\]\.classes\[0\]\.score"):
        await HiveClassifier(tasks, asynchronous=True).classify("x")
    assert fake.waited == ["dd52c0d0-9ec7"]
