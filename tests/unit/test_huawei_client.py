"""Huawei ImageSearch client over httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from consumer.devtools.samples import image_bytes, make_image
from consumer.errors import PermanentError, RateLimitedError, TransientError
from consumer.httpclient import HttpClient
from consumer.media import Media, MediaFetcher
from consumer.providers.huawei import HuaweiImageSearch, HuaweiTransport, fit_for_search
from consumer.retry import RetryPolicy

TOKEN = "huawei-secret-token"


def client(handler: Callable[[httpx.Request], httpx.Response], attempts: int = 2) -> HuaweiImageSearch:
    http = HttpClient(httpx.MockTransport(handler))
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
