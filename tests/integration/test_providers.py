"""Our provider clients against the simulator over real HTTP: every endpoint, sync and async,
success and each error class (transient ⇒ retried then TransientError; permanent ⇒ PermanentError)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from consumer.callbacks.receiver import AsyncTasks, CallbackReceiver, Correlator
from consumer.checks.media import Media, MediaFetcher
from consumer.checks.providers.hive import (
    HiveClassifier,
    HiveCustomIndex,
    HiveHashMatcher,
    HiveTasks,
    HiveTransport,
)
from consumer.checks.providers.huawei import HuaweiImageSearch, HuaweiTransport
from consumer.checks.retry import RetryPolicy
from consumer.errors import PermanentError, RateLimitedError, TransientError
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import AiohttpClient, HttpClient
from moderation_devtools.samples import image_bytes, make_image, make_video, reencoded
from moderation_devtools.stack import SimulatorProcess
from moderation_simulator.state import DEFAULT_HUAWEI_TOKEN, DEFAULT_KEYS

pytestmark = pytest.mark.integration
ONE_TRY = RetryPolicy(attempts=1)
LOOPBACK_MEDIA = EgressPolicy.of(allow=["127.0.0.1/32"])  # the simulator hosts the media


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with AiohttpClient(64) as client:  # the production client
        yield client


@dataclass
class Receiver:
    tasks: AsyncTasks
    outcomes: list[dict[str, Any]]
    delivered: asyncio.Event


@pytest.fixture
async def callbacks() -> AsyncIterator[Receiver]:
    """A real callback receiver on 127.0.0.1 delivering straight to a correlator (no Kafka relay)."""
    correlator = Correlator()
    outcomes: list[dict[str, Any]] = []
    delivered = asyncio.Event()

    async def deliver(raw: bytes, task_id: str | None, headers: Any = None) -> None:
        body = json.loads(raw)
        outcomes.append({"outcome": correlator.deliver(body), "resent": "resent_on" in body})
        delivered.set()

    app = web.Application()
    CallbackReceiver("tok", deliver).routes(app)
    async with TestServer(app, host="127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/callbacks/tok"
        yield Receiver(AsyncTasks(correlator, url, poll_after_s=20, poll_interval_s=0.2), outcomes, delivered)


def hive(
    sim: SimulatorProcess,
    http: HttpClient,
    project: str,
    *,
    retry: RetryPolicy = ONE_TRY,
    tasks: AsyncTasks | None = None,
    version: str = "v1",
    key: str | None = None,
    timeout_s: float = 10.0,
) -> HiveTasks:
    transport = HiveTransport(
        http,
        sim.url,
        SecretStr(key or DEFAULT_KEYS[project]),
        project,
        retry,  # type: ignore[index]
        timeout_s,
    )
    return HiveTasks(transport, version=version, tasks=tasks)


def png(seed: int, size: tuple[int, int] = (480, 360)) -> Media:
    return Media(data=image_bytes(make_image(seed, size)), content_type="image/png")


# --- Hive task API ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_visual_and_text_sync(sim: SimulatorProcess, http: HttpClient, version: str) -> None:
    visual = await HiveClassifier(hive(sim, http, "visual", version=version)).classify(png(1))
    assert len(visual.value) == 1 and "general_nsfw" in visual.value[0].scores
    assert visual.model == "visual_moderation_sim"
    text = await HiveClassifier(hive(sim, http, "text", version=version)).classify("you are kind")
    assert text.value[0].scores["no_violence"] > 0.9


async def test_media_by_url(sim: SimulatorProcess, http: HttpClient) -> None:
    url = sim.host_media("u.png", image_bytes(make_image(2)), "image/png")
    checked = await HiveClassifier(hive(sim, http, "visual")).classify(Media(url=url))
    assert checked.value[0].scores


async def test_async_task_completes_by_callback_and_resends_are_ignored(
    sim: SimulatorProcess, http: HttpClient, callbacks: Receiver
) -> None:
    tasks, outcomes = callbacks.tasks, callbacks.outcomes
    sim.set_faults({"resend": 1.0})
    checked = await HiveClassifier(hive(sim, http, "visual", tasks=tasks), asynchronous=True).classify(png(3))
    assert checked.value[0].scores
    async with asyncio.timeout(10):  # the resend follows the first callback
        while len(outcomes) < 2:
            await callbacks.delivered.wait()
            callbacks.delivered.clear()
    assert outcomes == [{"outcome": "completed", "resent": False}, {"outcome": "duplicate", "resent": True}]
    assert sim.stats()["requests"].get("task_get", 0) == 0


async def test_async_task_without_callback_is_polled(
    sim: SimulatorProcess, http: HttpClient, callbacks: Receiver
) -> None:
    tasks, outcomes = callbacks.tasks, callbacks.outcomes
    tasks._poll_after = 0.2  # no callback will come: poll quickly
    sim.set_faults({"callback_drop": 1.0})
    checked = await HiveClassifier(hive(sim, http, "text", tasks=tasks), asynchronous=True).classify("hello")
    assert checked.value[0].scores and outcomes == []
    assert sim.stats()["requests"]["task_get"] >= 1


async def test_async_task_level_error_arrives_in_the_callback(
    sim: SimulatorProcess, http: HttpClient, callbacks: Receiver
) -> None:
    tasks = callbacks.tasks
    with pytest.raises(PermanentError, match="task error 3002"):
        await HiveClassifier(hive(sim, http, "visual", tasks=tasks), asynchronous=True).classify(
            Media(data=b"not media at all")
        )


# --- CSAM ---------------------------------------------------------------------------------------


async def test_csam_image_match_and_no_match(sim: SimulatorProcess, http: HttpClient) -> None:
    listed = make_image(50)
    sim.add_csam_image(image_bytes(listed))
    matcher = HiveHashMatcher(hive(sim, http, "csam"))
    hit = (await matcher.match(Media(data=reencoded(listed)))).value.result
    assert hit.matched and hit.hash_type == "pdq"
    assert not (await matcher.match(png(51))).value.result.matched


async def test_csam_video_md5_and_scenes(
    sim: SimulatorProcess, http: HttpClient, callbacks: Receiver
) -> None:
    tasks = callbacks.tasks
    size = (320, 240)
    sim.add_csam_image(image_bytes(make_image(61, size)))
    clip = make_video([60, 61, 61, 62], size=size)
    matcher = HiveHashMatcher(hive(sim, http, "csam", tasks=tasks), asynchronous=True)
    scenes = (await matcher.match(Media(data=clip, content_type="video/mp4"))).value.result
    assert scenes.matched and scenes.hash_type == "videoSaferhashv0"
    assert [(s.start_seconds, s.end_seconds) for s in scenes.scenes] == [(1.0, 3.0)]
    other = make_video([63, 64], size=size)
    sim.add_csam_md5(hashlib.md5(other).hexdigest())
    whole = (await matcher.match(Media(data=other))).value.result
    assert whole.matched and (whole.hash_type, whole.match_distance) == ("md5", 0)


async def test_combined_endpoint_returns_classes_only_without_a_match(
    sim: SimulatorProcess, http: HttpClient
) -> None:
    matcher = HiveHashMatcher(hive(sim, http, "csam_combined"), combined=True)
    clean = (await matcher.match(png(70))).value
    assert not clean.result.matched and set(clean.classes[0].scores) == {"csam", "pornography", "other"}
    listed = make_image(71)
    sim.add_csam_image(image_bytes(listed))
    hit = (await matcher.match(Media(data=reencoded(listed)))).value
    assert hit.result.matched and hit.classes == ()


async def test_csam_too_small_is_permanent(sim: SimulatorProcess, http: HttpClient) -> None:
    with pytest.raises(PermanentError, match="3003"):
        await HiveHashMatcher(hive(sim, http, "csam")).match(png(1, (40, 40)))


# --- custom index -------------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_custom_index_add_query_remove(
    sim: SimulatorProcess,
    http: HttpClient,
    callbacks: Receiver,
    asynchronous: bool,
) -> None:
    tasks = callbacks.tasks
    index = HiveCustomIndex(hive(sim, http, "index", tasks=tasks), asynchronous=asynchronous)
    banned = make_image(80)
    assert len(await index.add(Media(data=image_bytes(banned)), "t1", "case 80")) == 64
    found = (await index.query(Media(data=reencoded(banned)), "t1")).value
    assert [m.metadata for m in found] == ["case 80"] and found[0].score >= 0.9
    assert (await index.query(Media(data=reencoded(banned)), "t2")).value == []  # another tenant
    assert await index.remove(Media(data=image_bytes(banned)), "t1") == found[0].match_id
    assert (await index.query(Media(data=reencoded(banned)), "t1")).value == []


async def test_custom_index_rejects_gif(sim: SimulatorProcess, http: HttpClient) -> None:
    from moderation_devtools.samples import make_gif

    with pytest.raises(PermanentError, match="HTTP 400"):
        await HiveCustomIndex(hive(sim, http, "index")).query(Media(data=make_gif([1, 2])), "t")


# --- error classes ------------------------------------------------------------------------------


async def test_wrong_key_is_permanent_403(sim: SimulatorProcess, http: HttpClient) -> None:
    with pytest.raises(PermanentError) as info:
        await HiveClassifier(hive(sim, http, "visual", key="nope")).classify(png(1))
    assert info.value.status == 403 and "nope" not in str(info.value)


async def test_insufficient_balance_is_permanent_405(sim: SimulatorProcess, http: HttpClient) -> None:
    sim.set_balance("text", 1)
    classifier = HiveClassifier(hive(sim, http, "text"))
    await classifier.classify("first is paid for")
    with pytest.raises(PermanentError) as info:
        await classifier.classify("second is not")
    assert info.value.status == 405


async def test_rate_limit_answers_429_with_retry_after(sim: SimulatorProcess, http: HttpClient) -> None:
    sim.set_rate_limit(0.5, 1)
    classifier = HiveClassifier(hive(sim, http, "text"))
    await classifier.classify("one")
    with pytest.raises(RateLimitedError) as info:
        await classifier.classify("two")
    assert info.value.retry_after is not None and info.value.retry_after >= 1


@pytest.mark.parametrize("code", ["500", "503", "504"])
async def test_server_errors_are_retried_then_transient(
    sim: SimulatorProcess, http: HttpClient, code: str
) -> None:
    sim.set_faults({code: 1.0})
    before = sim.stats()["requests"].get("task_sync", 0)
    with pytest.raises(TransientError, match=f"HTTP {code}"):
        await HiveClassifier(hive(sim, http, "text", retry=RetryPolicy(3, 0, 0))).classify("x")
    assert sim.stats()["requests"]["task_sync"] - before == 3


async def test_a_hang_times_out_as_transient(sim: SimulatorProcess, http: HttpClient) -> None:
    sim.set_faults({"hang": 1.0, "hang_s": 3})
    with pytest.raises(TransientError, match="timeout"):
        await HiveClassifier(hive(sim, http, "text", timeout_s=0.3)).classify("x")


@pytest.mark.parametrize(
    ("url", "code", "error"),
    [
        ("/media/missing.png", "2001", TransientError),
        ("not a url", "2002", TransientError),
    ],
)
async def test_download_failures_are_transient_task_errors(
    sim: SimulatorProcess, http: HttpClient, url: str, code: str, error: type[Exception]
) -> None:
    target = sim.url + url if url.startswith("/") else url
    with pytest.raises(error, match=f"task error {code}"):
        await HiveClassifier(hive(sim, http, "visual")).classify(Media(url=target))


async def test_corrupt_media_is_a_permanent_task_error(sim: SimulatorProcess, http: HttpClient) -> None:
    with pytest.raises(PermanentError, match="task error 3002"):
        await HiveClassifier(hive(sim, http, "visual")).classify(Media(data=b"\x89PNG broken"))


# --- Huawei ImageSearch -------------------------------------------------------------------------


def huawei(sim: SimulatorProcess, http: HttpClient, token: str = DEFAULT_HUAWEI_TOKEN) -> HuaweiImageSearch:
    transport = HuaweiTransport(http, sim.url, "proj-1", "inst-1", SecretStr(token), ONE_TRY)
    return HuaweiImageSearch(transport, MediaFetcher(http, egress=LOOPBACK_MEDIA))


async def test_huawei_add_search_tags_check_delete(sim: SimulatorProcess, http: HttpClient) -> None:
    search = huawei(sim, http)
    banned = make_image(93)  # PDQ quality 100 (seed 90's 45 would be discarded, as PDQ advises)
    path = await search.add(Media(data=image_bytes(banned), filename="u90"), "t1", "confirmed BLOCK")
    hits = (await search.query(Media(data=reencoded(banned)), "t1")).value
    assert [(h.match_id, h.metadata) for h in hits] == [(path, "confirmed BLOCK")] and hits[0].score >= 0.9
    assert (await search.query(Media(data=reencoded(banned)), "t2")).value == []  # scoped to the tenant
    assert (await search.query(png(91), "t1")).value == []
    await search.set_tags(path, {"tenant": "t2", "note": "moved"})
    assert [h.metadata for h in (await search.query(Media(data=reencoded(banned)), "t2")).value] == ["moved"]
    assert await search.exists(path) is True
    assert await search.remove(Media(data=b"", filename="u90"), "t2", path=path) == path
    assert await search.exists(path) is False
    assert await search.remove(Media(data=b""), "t2", path=path) is None  # IS.0010: already gone


async def test_huawei_url_media_is_downloaded_and_sent_as_file(
    sim: SimulatorProcess, http: HttpClient
) -> None:
    search = huawei(sim, http)
    await search.add(png(92), "t", "x", path="seed-92")
    url = sim.host_media("q.jpg", reencoded(make_image(92)), "image/jpeg")
    assert [h.match_id for h in (await search.query(Media(url=url), "t")).value] == ["seed-92"]


async def test_huawei_error_codes(sim: SimulatorProcess, http: HttpClient) -> None:
    with pytest.raises(PermanentError, match=r"IS\.0004"):
        await huawei(sim, http, token="expired").query(png(1), "t")
    with pytest.raises(PermanentError, match=r"IS\.0008"):
        await huawei(sim, http).query(png(1, (80, 80)), "t")  # narrow side under 100 px
    sim.set_faults({"is0012": 1.0})
    with pytest.raises(TransientError, match=r"IS\.0012"):
        await huawei(sim, http).query(png(1), "t")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "IS.0001"),
        (b'{"limit": 0, "tags": {"a": "b"}}', "IS.0002"),
        (b'{"offset": -1, "tags": {"a": "b"}}', "IS.0002"),
        (b'{"limit": 5}', "IS.0003"),
        (b'{"path": "nowhere"}', "IS.0010"),
        (b'{"file": "%%%"}', "IS.0008"),
    ],
)
async def test_huawei_request_validation(
    sim: SimulatorProcess, http: HttpClient, body: bytes, code: str
) -> None:
    resp = await http.request(
        "POST", f"{sim.url}/v1/p/i/image/search", content=body, headers={"X-Auth-Token": DEFAULT_HUAWEI_TOKEN}
    )
    assert resp.status_code == 400 and resp.json()["error_code"] == code


async def test_huawei_crop_box_searches_a_region(sim: SimulatorProcess, http: HttpClient) -> None:
    scene = make_image(95, (600, 400))
    region = scene.crop((100, 50, 500, 350))
    await huawei(sim, http).add(Media(data=image_bytes(region)), "t", "region", path="region")
    body = {
        "file": base64.b64encode(image_bytes(scene)).decode(),
        "is_crop": True,
        "box": {"x": 100, "y": 50, "width": 400, "height": 300},
        "tags": {"tenant": "t"},
    }
    resp = await http.request(
        "POST",
        f"{sim.url}/v1/proj-1/inst-1/image/search",
        json=body,
        headers={"X-Auth-Token": DEFAULT_HUAWEI_TOKEN},
    )
    assert [r["path"] for r in resp.json()["result"]] == ["region"]
