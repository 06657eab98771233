"""Media downloads: redirects bounded and checked hop by hop, bodies bounded, empty or redirect bodies
never taken for media, hashes computed here (httpx.MockTransport)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from consumer.checks.media import (
    Media,
    MediaFetcher,
    MediaPolicy,
    content_key,
    media_of,
    verify_declared_hash,
)
from consumer.checks.retry import RetryPolicy
from consumer.core.records import MediaType, UploadEvent
from consumer.errors import InvalidRecordError, MediaTooLarge, PermanentError, TransientError
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import HttpxClient

PUBLIC = "http://93.184.216.34"


def fetcher(handler: Callable[[httpx.Request], httpx.Response], **kw: int) -> MediaFetcher:
    http = HttpxClient(httpx.MockTransport(handler))
    return MediaFetcher(http, egress=EgressPolicy(), retry=RetryPolicy(4, 0, 0), **kw)


async def test_follows_a_bounded_number_of_redirects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        hops = int(request.url.params.get("hop", "0"))
        if hops < 2:
            return httpx.Response(302, headers={"location": f"/m?hop={hops + 1}"})
        return httpx.Response(200, content=b"image")

    assert await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m")) == b"image"
    with pytest.raises(PermanentError, match="redirected more than 1 times"):
        await fetcher(handler, max_redirects=1).bytes_of(Media(url=f"{PUBLIC}/m"))


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
async def test_a_redirect_into_our_network_is_refused(location: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": location})

    with pytest.raises(PermanentError, match="egress policy") as caught:
        await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert caught.value.concerns_content
    assert seen == [f"{PUBLIC}/m"], "the refused hop must never be requested"


async def test_a_redirect_body_is_never_taken_for_media() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/m":
            return httpx.Response(302, headers={"location": "/empty"})
        return httpx.Response(200, content=b"")

    with pytest.raises(PermanentError, match="empty body"):
        await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m"))
    with pytest.raises(PermanentError, match="without a location"):
        await fetcher(lambda _: httpx.Response(302)).bytes_of(Media(url=f"{PUBLIC}/m"))


async def test_status_classes() -> None:
    with pytest.raises(PermanentError, match="404"):
        await fetcher(lambda _: httpx.Response(404)).bytes_of(Media(url=f"{PUBLIC}/m"))
    with pytest.raises(TransientError, match="503"):
        await fetcher(lambda _: httpx.Response(503)).bytes_of(Media(url=f"{PUBLIC}/m"))
    with pytest.raises(PermanentError, match="206"):
        await fetcher(lambda _: httpx.Response(206, content=b"x")).bytes_of(Media(url=f"{PUBLIC}/m"))


async def test_oversize_media_is_refused_and_upload_mode_falls_back_to_the_url() -> None:
    big = fetcher(lambda _: httpx.Response(200, content=b"x" * 2000), max_bytes=1000)
    with pytest.raises(MediaTooLarge):
        await big.bytes_of(Media(url=f"{PUBLIC}/m"))
    kept = await MediaPolicy("upload", big).prepare(Media(url=f"{PUBLIC}/m"))
    assert kept.data is None and kept.url == f"{PUBLIC}/m"


async def test_loopback_media_urls_are_refused_unless_allowed() -> None:
    ok = fetcher(lambda _: httpx.Response(200, content=b"x"))
    with pytest.raises(PermanentError, match="loopback"):
        await ok.bytes_of(Media(url="http://127.0.0.1:8700/media/a.png"))
    allowed = MediaFetcher(
        HttpxClient(httpx.MockTransport(lambda _: httpx.Response(200, content=b"x"))),
        egress=EgressPolicy.of(allow=["127.0.0.1/32"]),
    )
    assert await allowed.bytes_of(Media(url="http://127.0.0.1:8700/media/a.png")) == b"x"


async def test_downloaded_media_carries_the_hash_computed_here() -> None:
    policy = MediaPolicy("upload", fetcher(lambda _: httpx.Response(200, content=b"pixels")))
    media = await policy.prepare(Media(url=f"{PUBLIC}/m"))
    assert media.sha256 == hashlib.sha256(b"pixels").hexdigest()


def test_declared_hashes_are_checked_against_the_bytes() -> None:
    data = b"pixels"
    good = UploadEvent(
        "u",
        "t",
        "u",
        MediaType.IMAGE,
        0,
        media_bytes=data,
        content_sha256=hashlib.sha256(data).hexdigest().upper(),
    )
    verify_declared_hash(good, media_of(good))
    assert content_key(good, media_of(good)) == hashlib.sha256(data).hexdigest()
    bad = UploadEvent("u", "t", "u", MediaType.IMAGE, 0, media_bytes=data, content_sha256="00" * 32)
    with pytest.raises(InvalidRecordError, match="not the SHA-256"):
        verify_declared_hash(bad, media_of(bad))
    url_only = UploadEvent(
        "u", "t", "u", MediaType.IMAGE, 0, media_url=f"{PUBLIC}/m", content_sha256="00" * 32
    )
    assert content_key(url_only, media_of(url_only)) is None, "URL media we did not fetch has no cache key"


def test_only_the_media_type_reaches_headers() -> None:
    u = UploadEvent("u", "t", "u", MediaType.IMAGE, 0, media_bytes=b"x", content_type="Image/PNG; charset=x")
    assert media_of(u).content_type == "image/png"
