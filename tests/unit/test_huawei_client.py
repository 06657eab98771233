"""Huawei ImageSearch client over httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from consumer.checks.media import Media, MediaFetcher
from consumer.checks.providers.huawei import HuaweiImageSearch, HuaweiTransport, fit_for_search
from consumer.checks.retry import RetryPolicy
from consumer.errors import PermanentError, RateLimitedError, TransientError
from consumer.transports.httpclient import HttpxClient
from moderation_devtools.samples import image_bytes, make_image

TOKEN = "huawei-secret-token"


def client(handler: Callable[[httpx.Request], httpx.Response], attempts: int = 2) -> HuaweiImageSearch:
    http = HttpxClient(httpx.MockTransport(handler))
    transport = HuaweiTransport(
        http, "http://is.test", "proj", "inst", SecretStr(TOKEN), RetryPolicy(attempts, 0.01, 0.02)
    )
    return HuaweiImageSearch(transport, MediaFetcher(http), limit=5)


async def test_search_sends_base64_file_token_and_tenant_tag() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "count": 1,
                "result": [
                    {"path": "moderation://t/u1", "sim": 0.97, "tags": {"tenant": "t", "note": "case 3"}}
                ],
            },
        )

    data = image_bytes(make_image(1))
    checked = await client(handler).query(Media(data=data), "t")
    request = seen[0]
    assert request.url.path == "/v1/proj/inst/image/search" and request.headers["x-auth-token"] == TOKEN
    body = json.loads(request.content)
    assert base64.b64decode(body["file"]) == data
    assert (body["limit"], body["offset"], body["tags"]) == (5, 0, {"tenant": "t"})
    assert [(m.match_id, m.score, m.metadata) for m in checked.value] == [
        ("moderation://t/u1", 0.97, "case 3")
    ]


async def test_url_media_is_downloaded_for_search() -> None:
    data = image_bytes(make_image(2))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.test":
            return httpx.Response(200, content=data)
        assert base64.b64decode(json.loads(request.content)["file"]) == data
        return httpx.Response(200, json={"count": 0, "result": []})

    assert (await client(handler).query(Media(url="http://cdn.test/a.png"), "t")).value == []


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("IS.0001", PermanentError),
        ("IS.0002", PermanentError),
        ("IS.0003", PermanentError),
        ("IS.0004", PermanentError),
        ("IS.0008", PermanentError),
        ("IS.0012", TransientError),
    ],
)
async def test_error_codes_are_classified(code: str, error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error_code": code, "error_msg": "bad"})

    with pytest.raises(error, match=code) as info:
        await client(handler, attempts=1).query(Media(data=b"x"), "t")
    assert TOKEN not in str(info.value)


async def test_throttling_and_server_errors_are_transient() -> None:
    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json={"error_code": "APIGW.0308", "error_msg": "throttled"}, headers={"retry-after": "2"}
        )

    with pytest.raises(RateLimitedError) as info:
        await client(throttled, attempts=1).query(Media(data=b"x"), "t")
    assert info.value.retry_after == 2.0

    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="down")

    with pytest.raises(TransientError):
        await client(down, attempts=1).query(Media(data=b"x"), "t")


async def test_add_delete_check_and_tags() -> None:
    calls: list[tuple[str, str, dict[str, object]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((request.method, request.url.path, body))
        if request.url.path.endswith("/check"):
            return httpx.Response(200, json={"result": {"exist": True}})
        if request.method == "DELETE" and body["path"] == "gone":
            return httpx.Response(400, json={"error_code": "IS.0010", "error_msg": "image not found"})
        return httpx.Response(200, json={"result": "success"})

    search = client(handler)
    path = await search.add(Media(data=image_bytes(make_image(3)), filename="u7"), "t", "confirmed BLOCK")
    assert path == "moderation://t/u7"
    assert calls[0][2]["tags"] == {"tenant": "t", "note": "confirmed BLOCK"}
    assert await search.exists(path) is True
    await search.set_tags(path, {"tenant": "t", "note": "x"})
    assert await search.remove(Media(data=b"x", filename="u7"), "t") == "moderation://t/u7"
    assert await search.remove(Media(data=b"x"), "t", path="gone") is None
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _ in calls] == [
        ("POST", "image"),
        ("POST", "check"),
        ("PUT", "image"),
        ("DELETE", "image"),
        ("DELETE", "image"),
    ]


def test_oversized_images_are_shrunk_to_the_api_limit() -> None:
    big = image_bytes(make_image(4, (3000, 1500)))
    import io

    from PIL import Image

    assert max(Image.open(io.BytesIO(fit_for_search(big))).size) == 2048
    small = image_bytes(make_image(4))
    assert fit_for_search(small) == small


# --- answers of the right status and the wrong shape ------------------------------------------------

SENTINEL = "SENTINEL-VALUE-7"


def answering(status: int, content: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, content=content)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 1}, "result"),
        ({"result": SENTINEL}, "result"),
        ({"result": {"path": "a"}}, "result"),
        ({"result": [SENTINEL]}, "result[0]"),
        ({"result": [{"path": "a", "sim": SENTINEL}]}, "result[0].sim"),
        ({"result": [{"path": "a", "sim": 1.5}]}, "result[0].sim"),
        ({"result": [{"path": "a", "sim": -0.5}]}, "result[0].sim"),
        ({"result": [{"path": "a", "sim": True}]}, "result[0].sim"),
        ({"result": [{"path": "a", "sim": float("nan")}]}, "result[0].sim"),
        ({"result": [{"path": "a"}]}, "result[0].sim"),
        ({"result": [{"path": 9, "sim": 0.5}]}, "result[0].path"),
        ({"result": [{"path": "", "sim": 0.5}]}, "result[0].path"),
        ({"result": [{"path": "a", "sim": 0.5, "tags": [SENTINEL]}]}, "result[0].tags"),
        ({"result": [{"path": "a", "sim": 0.5, "tags": {"note": 3}}]}, "result[0].tags.note"),
        ({"result": [], "error_code": 12}, "error_code"),
        ({"result": [], "error_code": SENTINEL}, "error_code"),
    ],
)
def test_a_malformed_search_answer_names_the_field_not_the_value(body: dict[str, object], field: str) -> None:
    from consumer.checks.providers.huawei import check_huawei_response, parse_search
    from consumer.checks.redaction import Redactor
    from consumer.errors import ProviderAnswerError

    with pytest.raises(ProviderAnswerError) as info:
        if field == "error_code":
            check_huawei_response(
                httpx.Response(200, content=json.dumps(body).encode()), "similarity", redactor=Redactor()
            )
        parse_search(body, "similarity")  # as a body parsed with json.loads (NaN included) would be
    assert info.value.field == field
    assert str(info.value).startswith(f"similarity: ImageSearch answer: {field} ")
    assert SENTINEL not in str(info.value)


def test_a_search_answer_parses_and_tolerates_absent_tags() -> None:
    from consumer.checks.providers.huawei import parse_search

    body = {"count": 2, "result": [{"path": "p", "sim": 1}, {"path": "q", "sim": 0.5, "tags": None}]}
    assert [(m.match_id, m.score, m.metadata) for m in parse_search(body)] == [
        ("p", 1.0, None),
        ("q", 0.5, None),
    ]


@pytest.mark.parametrize(
    "content", [b"[1, 2]", b'"ok"', b"3.5", b"\xff\xfe{}", b"{" * 5000, b"", b"null", b'{"result": [NaN]}']
)
async def test_bodies_that_are_not_an_object_are_answer_errors(content: bytes) -> None:
    from consumer.errors import ProviderAnswerError

    with pytest.raises(ProviderAnswerError):
        await client(answering(200, content), attempts=1).query(Media(data=b"x"), "t")


@pytest.mark.parametrize(
    "content", [b"[1, 2]", b"\xff", b'{"error_code": null}', b'{"error_code": ["IS.0001"]}']
)
async def test_error_bodies_of_any_shape_map_to_the_status(content: bytes) -> None:
    with pytest.raises(PermanentError) as info:
        await client(answering(400, content), attempts=1).query(Media(data=b"x"), "t")
    assert info.value.code is None and info.value.status == 400
    assert not info.value.concerns_content  # no provider code: not known to be about the image


async def test_a_null_error_code_on_success_is_no_error() -> None:
    body = b'{"error_code": null, "error_msg": null, "count": 0, "result": []}'
    assert (await client(answering(200, body)).query(Media(data=b"x"), "t")).value == []


async def test_a_malformed_answer_is_retried_and_a_good_one_wins() -> None:
    answers = [
        b'{"result": "oops"}',
        b'{"result": [{"path": "p", "sim": 0.9, "tags": {"tenant": "t"}}, {"path": "q", "sim": 0.8}]}',
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answers.pop(0))

    checked = await client(handler, attempts=2).query(Media(data=b"x"), "t")
    assert checked.attempts == 2 and [m.score for m in checked.value] == [0.9]


async def test_a_match_counts_only_when_its_tenant_tag_is_the_uploads_exactly() -> None:
    """The provider's tag filter is not trusted: another tenant's (or an untagged) result is dropped."""
    result = [
        {"path": "a", "sim": 0.99, "tags": {"tenant": "victim;attacker", "note": "forged"}},
        {"path": "b", "sim": 0.98, "tags": {"tenant": "other", "note": "theirs"}},
        {"path": "c", "sim": 0.97},
        {"path": "d", "sim": 0.96, "tags": {"tenant": "victim", "note": "banned"}},
    ]
    body = json.dumps({"count": 4, "result": result}).encode()
    checked = await client(answering(200, body)).query(Media(data=b"x"), "victim")
    assert [(m.match_id, m.metadata) for m in checked.value] == [("d", "banned")]


@pytest.mark.parametrize(
    "body", [b'{"result": "yes"}', b'{"result": {"exist": "yes"}}', b'{"result": {}}', b"{}"]
)
async def test_a_malformed_check_answer_is_an_answer_error(body: bytes) -> None:
    from consumer.errors import ProviderAnswerError

    with pytest.raises(ProviderAnswerError, match=r"ImageSearch answer: result"):
        await client(answering(200, body), attempts=1).exists("p")


async def test_a_403_echoing_the_token_gives_an_error_without_it() -> None:
    echo = f"token invalid: X-Auth-Token: {TOKEN}; you sent {TOKEN}"
    body = json.dumps({"error_code": "APIGW.0301", "error_msg": echo}).encode()
    with pytest.raises(PermanentError) as info:
        await client(answering(403, body)).query(Media(data=b"x"), "t")
    assert TOKEN not in str(info.value) and "[redacted]" in str(info.value)
    assert info.value.code == "APIGW.0301"


async def test_images_over_the_pixel_limit_are_refused_before_any_call() -> None:
    from PIL import Image

    from consumer.checks.imaging import ImageWorkers

    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"result": []})

    limit = Image.MAX_IMAGE_PIXELS
    workers = ImageWorkers(1, max_pixels=10_000)
    try:
        http = HttpxClient(httpx.MockTransport(handler))
        transport = HuaweiTransport(
            http, "http://is.test", "proj", "inst", SecretStr(TOKEN), RetryPolicy(1, 0.01, 0.02)
        )
        search = HuaweiImageSearch(transport, MediaFetcher(http), workers=workers)
        with pytest.raises(PermanentError, match="pixel limit") as info:
            await search.query(Media(data=image_bytes(make_image(5, (200, 200)))), "t")
        assert info.value.concerns_content and calls == []
    finally:
        workers.close()
        Image.MAX_IMAGE_PIXELS = limit
