"""GIF uploads, and the index maintenance flows (review decision adds, deletion removes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from consumer.core.records import Decision, MediaType, ReviewDecision, UploadDeleted
from consumer.serde import AvroCodec
from consumer.telemetry import metrics
from moderation_devtools.samples import image_bytes, make_gif, make_image, reencoded
from moderation_devtools.stack import (
    SimulatorProcess,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until_async,
)

from .conftest import Topics

pytestmark = pytest.mark.integration
CODEC = AvroCodec()


def index_updates(op: str, outcome: str) -> float:
    labels = {"operation": op, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("moderation_index_updates_total", labels) or 0.0


async def wait_for(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    if not await wait_until_async(condition, within_s):
        raise AssertionError("condition not met before the deadline")


def produce(bootstrap: str, topic: str, schema: str, key: str, record: dict[str, Any]) -> None:
    produce_uploads(bootstrap, topic, [], raw=[(key.encode(), CODEC.encode(schema, record))])


async def test_gif_frames_are_classified_with_flagged_time_ranges(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.force_scores({"general_nsfw": 0.96}, media=image_bytes(make_image(402, (240, 180))))
    gif = upload(MediaType.GIF, data=make_gif([401, 402, 402, 403]), content_type="image/gif")
    produce_uploads(kafka_bootstrap, topics.input, [gif])
    async with running_service(settings_for(topics)):
        (v,) = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {gif.upload_id}, timeout=60
        )
    assert v.decision is Decision.BLOCK
    assert v.classification is not None
    spans = [(r.start_seconds, r.end_seconds, r.label) for r in v.classification.flagged_ranges]
    assert spans == [(1.0, 3.0, "general_nsfw")]  # frames at 1 s and 2 s, sampled at 1 fps
    assert {c.check for c in v.checks} == {"csam", "visual"}  # the custom index takes still images only


def index_size(sim: SimulatorProcess, provider: str) -> int:
    stats = sim.stats()
    return int(stats["index_size"] if provider == "hive" else stats["huawei_images"])


@pytest.mark.parametrize("provider", ["hive", "huawei"])
async def test_confirmed_block_adds_to_the_index_and_deletion_removes(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    provider: str,
) -> None:
    original = make_image(601)
    url = sim.host_media("reviewed.png", image_bytes(original), "image/png")
    first = upload(MediaType.IMAGE, upload_id="orig", url=url)
    produce_uploads(kafka_bootstrap, topics.input, [first])
    async with running_service(settings_for(topics, similarity=provider)):
        (v1,) = await asyncio.to_thread(read_verdicts, kafka_bootstrap, topics.verdicts, {"orig"}, timeout=60)
        assert v1.decision is Decision.ALLOW

        added = index_updates("add", "applied")
        review = ReviewDecision(
            "case-1",
            "orig",
            "demo",
            Decision.BLOCK,
            int(time.time() * 1000),
            reviewer="alice",
            media_url=url,
            note="scam",
        )
        produce(kafka_bootstrap, topics.decisions, "ReviewDecision", "orig", review.to_avro())
        await wait_for(lambda: index_updates("add", "applied") == added + 1)
        assert index_size(sim, provider) == 1

        copy = upload(MediaType.IMAGE, upload_id="copy", data=reencoded(original))
        produce_uploads(kafka_bootstrap, topics.input, [copy])
        found = await asyncio.to_thread(read_verdicts, kafka_bootstrap, topics.verdicts, {"copy"}, timeout=60)
        v2 = next(v for v in found if v.upload_id == "copy")
        assert v2.decision is Decision.BLOCK
        assert v2.reasons[0].detail == "review case-1: confirmed BLOCK by alice (scam)"

        removed = index_updates("remove", "applied")
        deleted = UploadDeleted("orig", "demo", int(time.time() * 1000), media_url=url, reason="user request")
        produce(kafka_bootstrap, topics.deleted, "UploadDeleted", "orig", deleted.to_avro())
        await wait_for(lambda: index_updates("remove", "applied") == removed + 1)
        assert index_size(sim, provider) == 0

        again = upload(MediaType.IMAGE, upload_id="again", data=reencoded(original, 0.6))
        produce_uploads(kafka_bootstrap, topics.input, [again])
        found = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {"again"}, timeout=60
        )
    assert next(v for v in found if v.upload_id == "again").decision is Decision.ALLOW


async def test_allow_review_decision_leaves_the_index_alone(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    skipped = index_updates("add", "skipped")
    review = ReviewDecision("case-2", "u", "demo", Decision.ALLOW, 0, media_bytes=image_bytes(make_image(7)))
    produce(kafka_bootstrap, topics.decisions, "ReviewDecision", "u", review.to_avro())
    async with running_service(settings_for(topics)):
        await wait_for(lambda: index_updates("add", "skipped") == skipped + 1)
    assert sim.stats()["index_size"] == 0


async def test_a_transient_media_download_failure_is_retried_not_sent_to_review(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    """Huawei search needs the bytes: the media host's first two answers are 503, the third the
    image; the download is retried within the retry policy and the upload gets its real verdict."""
    url = sim.host_media("flaky.png", image_bytes(make_image(611)), "image/png", fail_first=2)
    flaky = upload(MediaType.IMAGE, upload_id="flaky", url=url)
    produce_uploads(kafka_bootstrap, topics.input, [flaky])
    retried = metrics.REGISTRY.get_sample_value(
        "moderation_provider_retries_total", {"check": "media", "reason": "503"}
    )
    async with running_service(settings_for(topics, similarity="huawei")):
        (v,) = await asyncio.to_thread(read_verdicts, kafka_bootstrap, topics.verdicts, {"flaky"}, timeout=60)
    assert v.decision is Decision.ALLOW
    assert sim.stats()["requests"]["media_get"] == 3
    after = metrics.REGISTRY.get_sample_value(
        "moderation_provider_retries_total", {"check": "media", "reason": "503"}
    )
    assert (after or 0.0) - (retried or 0.0) == 2
