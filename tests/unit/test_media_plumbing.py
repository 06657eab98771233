"""Media downloads go out as provider calls do (``ProviderEndpoint``, provider and check ``media``):
a transient failure (5xx, a reset connection, a timeout) is retried within the policy before the
upload fails closed; what retrying cannot change (404, the egress policy, the size bound) is tried
once; each attempt is counted and timed, traced as a client span, and bounded in concurrency
(httpx.MockTransport)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumer.checks.media import Media, MediaFetcher, download_gate
from consumer.checks.retry import RetryPolicy
from consumer.errors import MediaTooLarge, PermanentError, ProviderTimeout, TransientError
from consumer.telemetry import metrics, tracing
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import HttpxClient

PUBLIC = "http://93.184.216.34"
NO_WAIT = RetryPolicy(4, 0, 0)
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def fetcher(handler: Handler, retry: RetryPolicy = NO_WAIT, **kw: object) -> MediaFetcher:
    return MediaFetcher(
        HttpxClient(httpx.MockTransport(handler)),  # type: ignore[arg-type]
        egress=EgressPolicy(),
        retry=retry,
        **kw,  # type: ignore[arg-type]
    )


def answers(*outcomes: httpx.Response | Exception) -> tuple[list[str], Handler]:
    """A handler giving ``outcomes`` in turn (an exception is raised), and the URLs it was asked."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = outcomes[min(len(seen), len(outcomes) - 1)]
        seen.append(str(request.url))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return seen, handler


def requests(status_class: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "moderation_provider_requests_total",
            {"provider": "media", "check": "media", "status_class": status_class},
        )
        or 0.0
    )


def retries(reason: str) -> float:
    labels = {"check": "media", "reason": reason}
    return metrics.REGISTRY.get_sample_value("moderation_provider_retries_total", labels) or 0.0


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (httpx.Response(503), "503"),
        (httpx.ReadError("connection reset by peer"), "transport"),
        (httpx.ReadTimeout("no answer"), "timeout"),
    ],
)
async def test_a_transient_failure_is_retried_before_the_download_fails(
    first: httpx.Response | Exception, reason: str
) -> None:
    seen, handler = answers(first, httpx.Response(200, content=b"image"))
    retried, served = retries(reason), requests("2xx")
    assert await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m")) == b"image"
    assert seen == [f"{PUBLIC}/m"] * 2
    assert retries(reason) == retried + 1
    assert requests("2xx") == served + 1


async def test_retries_are_bounded_by_the_policy() -> None:
    seen, handler = answers(httpx.Response(503))
    failed = requests("5xx")
    with pytest.raises(TransientError, match="503") as caught:
        await fetcher(handler, RetryPolicy(3, 0, 0)).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert len(seen) == 3
    assert caught.value.attempts == 3  # type: ignore[attr-defined]
    assert requests("5xx") == failed + 3
    seen, handler = answers(httpx.ReadTimeout("no answer"))
    with pytest.raises(ProviderTimeout):
        await fetcher(handler, RetryPolicy(2, 0, 0)).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert len(seen) == 2


@pytest.mark.parametrize("status", [404, 410])
async def test_a_missing_media_url_is_tried_once(status: int) -> None:
    seen, handler = answers(httpx.Response(status))
    with pytest.raises(PermanentError, match=str(status)) as caught:
        await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert len(seen) == 1
    assert caught.value.concerns_content


async def test_what_retrying_cannot_change_is_tried_once() -> None:
    seen, handler = answers(httpx.Response(200, content=b"x" * 2000))
    with pytest.raises(MediaTooLarge):
        await fetcher(handler, max_bytes=1000).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert len(seen) == 1, "an answer over the size bound is not asked again"

    seen, handler = answers(httpx.Response(302, headers={"location": "http://169.254.169.254/"}))
    with pytest.raises(PermanentError, match="egress policy"):
        await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert seen == [f"{PUBLIC}/m"], "a hop the egress policy refuses is never requested, nor retried"

    seen, handler = answers(httpx.Response(200, content=b""))
    with pytest.raises(PermanentError, match="empty body"):
        await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert len(seen) == 1

    seen, handler = answers(httpx.Response(302, headers={"location": "ftp://93.184.216.34/m"}))
    with pytest.raises(PermanentError, match="http"):
        await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m"))
    assert len(seen) == 1


async def test_a_failed_hop_is_retried_where_it_failed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/m":
            return httpx.Response(302, headers={"location": "/cdn"})
        return httpx.Response(502) if seen.count("/cdn") == 1 else httpx.Response(200, content=b"image")

    assert await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m")) == b"image"
    assert seen == ["/m", "/cdn", "/cdn"]


async def test_downloads_at_once_are_bounded_by_the_gate() -> None:
    running, most = 0, 0
    release = asyncio.Event()
    arrived = asyncio.Condition()

    async def handler(_: httpx.Request) -> httpx.Response:
        nonlocal running, most
        running += 1
        most = max(most, running)
        async with arrived:
            arrived.notify_all()
        await release.wait()
        running -= 1
        return httpx.Response(200, content=b"image")

    downloads = fetcher(handler, gate=download_gate(2))
    async with asyncio.timeout(10):
        tasks = [asyncio.create_task(downloads.bytes_of(Media(url=f"{PUBLIC}/{n}"))) for n in range(5)]
        async with arrived:
            await arrived.wait_for(lambda: running == 2)
        for _ in range(3):
            await asyncio.sleep(0)  # give a third download every chance to start: it must not
        assert running == 2
        release.set()
        assert await asyncio.gather(*tasks) == [b"image"] * 5
    assert most == 2


async def test_the_download_gate_neither_shrinks_nor_opens() -> None:
    """Media hosts are the uploaders' choice: one host's timeouts and failures must not narrow or
    hold everyone else's downloads."""
    gate = download_gate(4)
    for outcome in ("overload", "failure") * 25:
        await gate.enter()
        gate.exit(outcome, 30.0)
    assert gate.limit.allowed == 4
    assert not gate.is_open


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(SimpleSpanProcessor(exporter))
    yield exporter
    tracing.shutdown_tracing()


async def test_each_attempt_is_a_client_span_without_the_query(spans: InMemorySpanExporter) -> None:
    _, handler = answers(httpx.Response(503), httpx.Response(200, content=b"image"))
    await fetcher(handler).bytes_of(Media(url=f"{PUBLIC}/m.png?X-Amz-Signature=s3cret"))
    found = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [s.attributes.get("http.response.status_code") for s in found if s.attributes] == [503, 200]
    assert [s.attributes.get("http.request.resend_count") for s in found if s.attributes] == [None, 1]
    assert all("s3cret" not in str(dict(s.attributes or {})) for s in found)
