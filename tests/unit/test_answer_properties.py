"""Whatever a provider answers (any status, any bytes, any JSON, any mutation of a valid answer), only
errors of our tree (``ProviderError``) leave the response mapping and the parsers: never TypeError,
KeyError, ValueError, AttributeError or RecursionError."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from consumer.checks.media import Media, MediaFetcher
from consumer.checks.providers import hive
from consumer.checks.providers.hive import (
    HiveClassifier,
    HiveCustomIndex,
    HiveHashMatcher,
    HiveTasks,
    HiveTransport,
    check_response,
    parse_classification,
    parse_csam,
    parse_matches,
    raise_task_error,
)
from consumer.checks.providers.huawei import (
    HuaweiImageSearch,
    HuaweiTransport,
    check_huawei_response,
    parse_exists,
    parse_search,
)
from consumer.checks.redaction import Redactor
from consumer.checks.retry import RetryPolicy
from consumer.errors import ProviderError
from consumer.transports.httpclient import HttpxClient

REDACTOR = Redactor()
PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- valid answers, from the seed documents and the simulator ------------------------------------

CLASSIFICATION = {
    "id": "dd52c0d0",
    "code": 200,
    "status": [
        {
            "status": {"code": "0", "message": "SUCCESS"},
            "response": {
                "input": {"model": "textmod", "model_version": 1, "media": {"mimetype": None}},
                "output": [
                    {
                        "time": 0,
                        "classes": [{"class": "sexual", "score": 0.003}, {"class": "violence", "score": 0.9}],
                    },
                    {"time": 1.5, "classes": [{"class": "sexual", "score": 0.5}]},
                ],
            },
        }
    ],
}
CSAM = {
    "status": [
        {
            "status": {"code": 200, "message": "SUCCESS"},
            "response": {
                "input": {"model": "csam", "model_version": "2"},
                "output": [
                    {
                        "time": 0,
                        "file": {"fileType": "video", "md5": "abc"},
                        "hashes": [
                            {"hashType": "md5", "matchTypes": ["CSAM"], "matches": [{"matchDistance": 0}]},
                            {
                                "hashType": "videoSaferhashv0",
                                "matches": [
                                    {
                                        "matchDistance": 3,
                                        "sourceId": "thorn",
                                        "scenes": [{"startTimestamp": 1.0, "endTimestamp": 4.0}],
                                    }
                                ],
                            },
                        ],
                    }
                ],
            },
        }
    ]
}
CSAM_COMBINED = {
    "status": [
        {
            "status": {"code": "0", "message": "SUCCESS"},
            "response": {
                "output": [
                    {
                        "time": 0,
                        "classes": [{"class": "csam", "score": 0.01}, {"class": "other", "score": 0.99}],
                    }
                ]
            },
        }
    ]
}
INDEX_QUERY = {
    "task_id": "q1",
    "status": {"code": "0", "message": "SUCCESS"},
    "response": {
        "output": {
            "matches": [
                {
                    "url": "https://x/violence_4.jpg",
                    "id": "b2ff",
                    "similarity_score": 1.0,
                    "metadata": "tenant=t;m",
                },
                {"url": None, "id": 7, "similarity_score": 0.97, "metadata": None},
            ]
        }
    },
}
INDEX_ADD = {
    "status": [
        {
            "status": {"code": "0"},
            "response": {"output": {"status": "Success", "shaHash": "3e90", "id": "i1"}},
        }
    ]
}
INDEX_REMOVE = {"status": {"code": "0"}, "response": {"output": {"status": "Success", "id": "b2ff"}}}
TASK_ERROR = {
    "status": [{"status": {"code": 3002, "message": "Unsupported media"}, "response": {"output": []}}]
}
ASYNC_ACK = {"id": "dd52", "task_id": "dd52c0d0-9ec7", "message": "We received your task."}
HIVE_BODIES = [
    CLASSIFICATION,
    CSAM,
    CSAM_COMBINED,
    INDEX_QUERY,
    INDEX_ADD,
    INDEX_REMOVE,
    TASK_ERROR,
    ASYNC_ACK,
]

SEARCH = {
    "count": 2,
    "result": [{"path": "moderation://t/u1", "sim": 0.97, "tags": {"tenant": "t", "note": "n"}}],
}
CHECK = {"result": {"exist": True}}
HUAWEI_ERROR = {"error_code": "IS.0012", "error_msg": "Request timed out."}
HUAWEI_BODIES = [SEARCH, CHECK, HUAWEI_ERROR, {"result": "success"}]

# --- arbitrary JSON values and mutations -----------------------------------------------------------

KEYS = [
    *["status", "code", "message", "response", "input", "output", "model", "model_version", "time"],
    *["classes", "class", "score", "hashes", "hashType", "matches", "matchDistance", "scenes"],
    *["startTimestamp", "endTimestamp", "similarity_score", "id", "metadata", "url", "shaHash"],
    *["task_id", "error", "return_code", "count", "result", "path", "sim", "tags", "note", "exist"],
    *["error_code", "error_msg"],
]
LONG_TEXT = st.just(10_000).map(lambda n: "a" * n)
DEEP_JSON = st.sampled_from([5000, 100_000]).map(lambda n: b"[" * n + b"]" * n)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included: ``json.loads`` (callbacks) lets them through
    | st.text(max_size=12)
    | st.sampled_from(["0", "200", "2001", "3002", "IS.0012", "APIGW.0308", "", " ", "\ud800"])
    | LONG_TEXT
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid answer with one to four fields replaced (often by a scalar of another type),
    deleted or duplicated. The root stays an object: the parsers take the mapping
    ``check_response`` made sure of."""
    body = copy.deepcopy(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["scalar", "scalar", "value", "delete", "duplicate"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[path[-1]] = draw(scalars if action == "scalar" else json_values)
    return body


@st.composite
def leaves_fuzzed(draw: st.DrawFn, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid answer's shape with each leaf kept or, one time in four, replaced by any scalar."""

    def fuzz(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: fuzz(child) for key, child in value.items()}
        if isinstance(value, list):
            return [fuzz(child) for child in value]
        return draw(scalars) if draw(st.integers(0, 3)) == 0 else value

    fuzzed: dict[str, Any] = fuzz(draw(st.sampled_from(bodies)))
    return fuzzed


random_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5)
hive_objects = mutated(HIVE_BODIES) | leaves_fuzzed(HIVE_BODIES) | random_objects
huawei_objects = mutated(HUAWEI_BODIES) | leaves_fuzzed(HUAWEI_BODIES) | random_objects


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")  # NaN, Infinity, lone surrogates and all


def answer_bytes(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=300)
        | json_values.map(_encoded)
        | objects.map(_encoded)
        | st.sampled_from(
            [b"[" * 5000, b'{"a":' * 3000, b"\xff\xfe\x00{}", b"1e400", b"18446744073709551616"]
        )
    )


statuses = st.sampled_from(
    [200, 200, 200, 202, 204, 301, 400, 403, 404, 405, 408, 413, 429, 500, 503, 599, 99, 700]
)
retry_after = st.none() | st.sampled_from(["0", "7", "-1", "nan", "inf", "1e400", "soon", ""])


def _response(status: int, content: bytes, wait: str | None = None) -> httpx.Response:
    headers = {} if wait is None else {"retry-after": wait}
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))


def only_ours(parse: Callable[[dict[str, Any]], object], body: dict[str, Any]) -> None:
    with contextlib.suppress(ProviderError):
        parse(body)


# --- Hive ------------------------------------------------------------------------------------------

HIVE_PARSERS: list[Callable[[dict[str, Any]], object]] = [
    lambda b: raise_task_error(b, "visual", redactor=REDACTOR),
    lambda b: parse_classification(b, check="visual"),
    lambda b: parse_csam(b, check="csam"),
    lambda b: parse_matches(b, check="similarity"),
    lambda b: hive.model_of(b, "visual"),
    lambda b: hive.added_id(b, "similarity"),
    lambda b: hive.removed_id(b, "similarity"),
    lambda b: hive.task_id_of_ack(b, "visual"),
]


@PROPERTIES
@given(status=statuses, content=answer_bytes(hive_objects), wait=retry_after)
def test_any_hive_answer_maps_to_a_body_or_our_error(status: int, content: bytes, wait: str | None) -> None:
    resp = _response(status, content, wait)
    resp.read()
    for task_errors in (True, False):
        try:
            body = check_response(resp, "visual", redactor=REDACTOR, task_errors=task_errors)
        except ProviderError:
            continue
        assert isinstance(body, dict)
        for parse in HIVE_PARSERS:
            only_ours(parse, body)


@PROPERTIES
@given(body=mutated(HIVE_BODIES))
def test_any_mutation_of_a_valid_hive_body_parses_or_raises_our_error(body: dict[str, Any]) -> None:
    for parse in HIVE_PARSERS:
        only_ours(parse, body)


@PROPERTIES
@given(body=leaves_fuzzed(HIVE_BODIES))
def test_a_valid_hive_shape_with_any_leaves_parses_or_raises_our_error(body: dict[str, Any]) -> None:
    for parse in HIVE_PARSERS:
        only_ours(parse, body)


@PROPERTIES
@given(body=random_objects)
def test_any_json_object_as_a_hive_body_parses_or_raises_our_error(body: dict[str, Any]) -> None:
    for parse in HIVE_PARSERS:
        only_ours(parse, body)


def _run_all(calls: list[Callable[[], Awaitable[object]]]) -> None:
    async def main() -> None:
        for call in calls:
            with contextlib.suppress(ProviderError):
                await call()

    asyncio.run(main())


@PROPERTIES
@given(status=statuses, content=answer_bytes(hive_objects))
def test_hive_clients_raise_only_our_errors(status: int, content: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _response(status, content)

    def tasks(check: str) -> HiveTasks:
        http = HttpxClient(httpx.MockTransport(handler))
        return HiveTasks(
            HiveTransport(
                http, "http://hive.test", SecretStr("property-hive-key"), check, RetryPolicy(1, 0, 0)
            )
        )

    media = Media(data=b"\x89PNG", content_type="image/png")
    index = HiveCustomIndex(tasks("similarity"))
    _run_all(
        [
            lambda: HiveClassifier(tasks("visual")).classify(media),
            lambda: HiveClassifier(tasks("text")).classify("text"),
            lambda: HiveHashMatcher(tasks("csam")).match(media),
            lambda: index.query(media, "t"),
            lambda: index.add(media, "t", "note"),
            lambda: index.remove(media, "t"),
        ]
    )


# --- Huawei ----------------------------------------------------------------------------------------

HUAWEI_PARSERS: list[Callable[[dict[str, Any]], object]] = [
    lambda b: parse_search(b, "similarity"),
    lambda b: parse_exists(b, "similarity"),
]


@PROPERTIES
@given(status=statuses, content=answer_bytes(huawei_objects), wait=retry_after)
def test_any_huawei_answer_maps_to_a_body_or_our_error(status: int, content: bytes, wait: str | None) -> None:
    resp = _response(status, content, wait)
    resp.read()
    try:
        body = check_huawei_response(resp, "similarity", redactor=REDACTOR)
    except ProviderError:
        return
    assert isinstance(body, dict)
    for parse in HUAWEI_PARSERS:
        only_ours(parse, body)


@PROPERTIES
@given(body=mutated(HUAWEI_BODIES) | leaves_fuzzed(HUAWEI_BODIES))
def test_any_mutation_of_a_valid_huawei_body_parses_or_raises_our_error(body: dict[str, Any]) -> None:
    for parse in HUAWEI_PARSERS:
        only_ours(parse, body)


@PROPERTIES
@given(status=statuses, content=answer_bytes(huawei_objects))
def test_the_huawei_client_raises_only_our_errors(status: int, content: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _response(status, content)

    http = HttpxClient(httpx.MockTransport(handler))
    transport = HuaweiTransport(
        http, "http://is.test", "p", "i", SecretStr("property-huawei-token"), RetryPolicy(1, 0, 0)
    )
    search = HuaweiImageSearch(transport, MediaFetcher(http))
    media = Media(data=b"not an image")
    _run_all(
        [
            lambda: search.query(media, "t"),
            lambda: search.exists("p"),
            lambda: search.add(media, "t", "note"),
            lambda: search.remove(media, "t"),
            lambda: search.set_tags("p", {"tenant": "t"}),
        ]
    )
