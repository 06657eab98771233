"""One upload of each sample kind through the real broker, the real service and the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from consumer.core.records import Decision, MediaType, ModerationVerdict, UploadEvent
from moderation_devtools.samples import cropped, image_bytes, make_image, reencoded
from moderation_devtools.stack import SimulatorProcess, iter_verdicts, produce_uploads, read_verdicts, upload

from .conftest import Topics

pytestmark = pytest.mark.integration
IMAGE, TEXT = MediaType.IMAGE, MediaType.TEXT


@pytest.fixture
def moderate(
    kafka_bootstrap: str,
    topics: Topics,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> Callable[..., Any]:
    """await moderate(uploads, raw=[(key, value)]) -> {upload_id: verdict}, via the running service."""

    async def run(
        uploads: list[UploadEvent], raw: list[tuple[bytes | None, bytes]] | None = None
    ) -> dict[str, ModerationVerdict]:
        produce_uploads(kafka_bootstrap, topics.input, uploads, raw=raw or [])
        async with running_service(settings_for(topics)):
            verdicts = await asyncio.to_thread(
                read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=60
            )
        return {v.upload_id: v for v in verdicts}

    return run


async def test_benign_inline_image_is_allowed(moderate: Any) -> None:
    u = upload(IMAGE, data=image_bytes(make_image(1)), content_type="image/png")
    v = (await moderate([u]))[u.upload_id]
    assert v.decision is Decision.ALLOW
    assert v.reasons == ()
    assert {c.check for c in v.checks} == {"csam", "visual", "similarity"}
    assert all(c.outcome == "ok" for c in v.checks)
    assert v.csam is not None and not v.csam.matched
    assert v.verdict_id and v.policy_version and v.source_topic


async def test_benign_image_by_url_is_allowed(moderate: Any, sim: SimulatorProcess) -> None:
    url = sim.host_media("photo.jpg", image_bytes(make_image(2), "JPEG"), "image/jpeg")
    u = upload(IMAGE, url=url, content_type="image/jpeg")
    assert (await moderate([u]))[u.upload_id].decision is Decision.ALLOW


async def test_near_duplicates_of_a_banned_image_are_blocked(moderate: Any, sim: SimulatorProcess) -> None:
    banned = make_image(101)
    sim.index_add(image_bytes(banned), "banned: case 7", tenant="demo")
    resized = upload(IMAGE, data=reencoded(banned), content_type="image/jpeg")
    crop = upload(IMAGE, url=sim.host_media("crop.png", cropped(banned), "image/png"))
    unrelated = upload(IMAGE, data=image_bytes(make_image(5)))
    verdicts = await moderate([resized, crop, unrelated])
    for u in (resized, crop):
        v = verdicts[u.upload_id]
        assert v.decision is Decision.BLOCK
        assert v.reasons[0].label == "index_match" and v.reasons[0].detail == "banned: case 7"
        assert v.similarity and v.similarity[0].score >= 0.9
    assert verdicts[unrelated.upload_id].decision is Decision.ALLOW


async def test_banned_image_of_another_tenant_does_not_match(moderate: Any, sim: SimulatorProcess) -> None:
    banned = make_image(102)
    sim.index_add(image_bytes(banned), "other tenant's ban", tenant="someone-else")
    u = upload(IMAGE, data=reencoded(banned), tenant="demo")
    assert (await moderate([u]))[u.upload_id].decision is Decision.ALLOW


async def test_hash_list_copy_is_escalated_and_nothing_else_runs(
    moderate: Any, sim: SimulatorProcess, kafka_bootstrap: str, topics: Topics
) -> None:
    listed = make_image(202)
    sim.add_csam_image(image_bytes(listed))
    before = sim.stats()["requests"]
    u = upload(IMAGE, data=reencoded(listed), content_type="image/jpeg")
    v = (await moderate([u]))[u.upload_id]
    assert v.decision is Decision.ESCALATE
    assert v.csam is not None and v.csam.matched and v.csam.hash_type == "pdq"
    assert v.csam.match_distance is not None and v.csam.match_distance <= 31
    assert [c.check for c in v.checks] == ["csam"]
    after = sim.stats()["requests"]
    assert after.get("task_sync", 0) - before.get("task_sync", 0) == 1  # CSAM only, no classifier
    assert after.get("index_query", 0) == before.get("index_query", 0)
    escalated = [
        x.upload_id
        for x in iter_verdicts(kafka_bootstrap, topics.escalations, timeout=5)
        if x.upload_id == u.upload_id
    ][:1]
    assert escalated == [u.upload_id]


async def test_explicit_image_is_blocked_by_classification(moderate: Any, sim: SimulatorProcess) -> None:
    nsfw = make_image(303)
    sim.force_scores({"general_nsfw": 0.97}, media=image_bytes(nsfw))
    u = upload(IMAGE, data=reencoded(nsfw, 0.8))
    v = (await moderate([u]))[u.upload_id]
    assert v.decision is Decision.BLOCK
    assert (v.reasons[0].check, v.reasons[0].label, v.reasons[0].threshold) == ("visual", "general_nsfw", 0.9)
    assert v.classification is not None and v.classification.top_classes[0].class_name == "general_nsfw"


@pytest.mark.parametrize(
    ("text", "decision", "label"),
    [
        ("Lovely sunset at the beach today!", Decision.ALLOW, None),
        ("I am going to kill you tomorrow", Decision.BLOCK, "violence"),
        ("Buy now!!! free money, click here", Decision.REVIEW, "yes_spam"),
    ],
)
async def test_text_uploads(moderate: Any, text: str, decision: Decision, label: str | None) -> None:
    u = upload(TEXT, text=text)
    v = (await moderate([u]))[u.upload_id]
    assert v.decision is decision
    assert [c.check for c in v.checks] == ["text"]
    assert (v.reasons[0].label if v.reasons else None) == label


async def test_review_verdicts_also_go_to_the_review_topic(
    moderate: Any, kafka_bootstrap: str, topics: Topics
) -> None:
    u = upload(TEXT, text="limited offer, click here")
    assert (await moderate([u]))[u.upload_id].decision is Decision.REVIEW
    found = await asyncio.to_thread(read_verdicts, kafka_bootstrap, topics.review, {u.upload_id}, timeout=20)
    assert [v.upload_id for v in found] == [u.upload_id]


async def test_same_content_twice_is_answered_from_the_cache(moderate: Any, sim: SimulatorProcess) -> None:
    data = image_bytes(make_image(9))
    first = upload(IMAGE, upload_id="cache-1", data=data)
    second = upload(IMAGE, upload_id="cache-2", data=data)
    verdicts = await moderate([first, second])
    assert verdicts["cache-1"].decision is verdicts["cache-2"].decision is Decision.ALLOW
    checks = sorted(c.check for v in verdicts.values() for c in v.checks)
    # one upload asked the providers, the other shared its content results; similarity is always live
    assert checks == ["cache", "csam", "similarity", "similarity", "visual"]
    assert sim.stats()["requests"]["task_sync"] == 2  # csam + visual, once


async def test_a_provider_that_rejects_the_key_gives_a_review_with_the_reason(
    kafka_bootstrap: str,
    topics: Topics,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    settings = settings_for(topics)
    settings.hive.visual_key = type(settings.hive.visual_key)("wrong-key")  # type: ignore[misc]
    u = upload(IMAGE, data=image_bytes(make_image(11)))
    produce_uploads(kafka_bootstrap, topics.input, [u])
    async with running_service(settings):
        found = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id}, timeout=60
        )
    v = found[0]
    assert v.decision is Decision.REVIEW
    assert v.reasons[0].label == "check_rejected:visual"
    assert "403" in (v.reasons[0].detail or "") and "wrong-key" not in (v.reasons[0].detail or "")


async def test_v2_paths_and_the_async_custom_index(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    banned = make_image(104)
    sim.index_add(image_bytes(banned), "banned: case 8", tenant="demo")
    settings = settings_for(topics)
    settings.hive.api_version = "v2"
    settings.hive.index_async = True
    u = upload(IMAGE, data=reencoded(banned))
    produce_uploads(kafka_bootstrap, topics.input, [u])
    async with running_service(settings):
        (v,) = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id}, timeout=60
        )
    assert v.decision is Decision.BLOCK and v.reasons[0].detail == "banned: case 8"
    requests = sim.stats()["requests"]
    assert requests.get("index_query_async") == 1 and requests.get("index_query", 0) == 0
    assert requests.get("task_sync") == 2  # CSAM and visual, on the v2 paths
