"""Videos through Hive's async task API: callbacks, polling fallback, fail-closed deadline, and a
callback that reaches the wrong process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.core.records import Decision, MediaType, ModerationVerdict
from moderation_devtools.broker import free_port
from moderation_devtools.samples import image_bytes, make_image, make_video
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    VerdictCollector,
    consumer_env,
    iter_verdicts,
    json_log_lines,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until,
)

from .conftest import Topics

pytestmark = pytest.mark.integration
SIZE = (320, 240)


def video(seeds: list[int], upload_id: str | None = None) -> Any:
    return upload(
        MediaType.VIDEO, upload_id=upload_id, data=make_video(seeds, size=SIZE), content_type="video/mp4"
    )


async def moderate_one(
    kafka_bootstrap: str, topics: Topics, settings: Any, running_service: Any, item: Any
) -> ModerationVerdict:
    produce_uploads(kafka_bootstrap, topics.input, [item])
    async with running_service(settings):
        (v,) = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {item.upload_id}, timeout=90
        )
    return v


async def test_video_frames_flag_the_seconds_that_matter(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.force_scores({"general_nsfw": 0.97}, media=image_bytes(make_image(702, SIZE)))
    v = await moderate_one(
        kafka_bootstrap, topics, settings_for(topics), running_service, video([701, 702, 702, 703])
    )
    assert v.decision is Decision.BLOCK
    assert v.classification is not None
    assert [(r.start_seconds, r.end_seconds) for r in v.classification.flagged_ranges] == [(1.0, 3.0)]
    assert [(c.check, c.outcome) for c in v.checks] == [("csam", "ok"), ("visual", "ok")]
    assert sim.stats()["requests"].get("task_async", 0) == 2


async def test_video_with_a_hash_listed_scene_is_escalated_with_the_scene(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.add_csam_image(image_bytes(make_image(712, SIZE)))
    v = await moderate_one(
        kafka_bootstrap, topics, settings_for(topics), running_service, video([711, 712, 713])
    )
    assert v.decision is Decision.ESCALATE
    assert v.csam is not None and v.csam.hash_type == "videoSaferhashv0"
    assert [(s.start_seconds, s.end_seconds) for s in v.csam.scenes] == [(1.0, 2.0)]
    assert [c.check for c in v.checks] == ["csam"]


async def test_no_callback_means_the_task_is_polled(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.set_faults({"callback_drop": 1.0})
    settings = settings_for(topics, callbacks={"poll_after_s": 0.5, "poll_interval_s": 0.2})
    v = await moderate_one(kafka_bootstrap, topics, settings, running_service, video([721, 722]))
    assert v.decision is Decision.ALLOW
    assert [c.outcome for c in v.checks] == ["ok", "ok"]
    assert sim.stats()["requests"].get("task_get", 0) >= 2


async def test_a_task_that_never_finishes_fails_closed_at_the_deadline(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    sim.set_faults({"callback_drop": 1.0})
    settings = settings_for(topics, callbacks={"poll_after_s": 60, "deadline_s": 2})
    v = await moderate_one(kafka_bootstrap, topics, settings, running_service, video([731]))
    assert v.decision is Decision.REVIEW
    assert v.reasons[0].label == "check_unavailable:csam"  # CSAM never fails open


def _wait_for_log(path: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> None:
    if not wait_until(lambda: any(predicate(line) for line in json_log_lines(path)), timeout):
        raise AssertionError(f"no matching log line in {path}")


def test_a_callback_reaching_the_wrong_process_still_completes_its_upload(
    kafka_bootstrap: str, make_topics: Callable[..., Topics], sim: SimulatorProcess, tmp_path: Path
) -> None:
    """Two processes in one group; every callback is sent to process B (as a load balancer might).
    Process A's videos must still complete through the relay topic, without polling."""
    # 8 upload partitions and 1 of each maintenance topic: each of the two members gets uploads
    topics = make_topics(input_partitions=8, other_partitions=1)
    port_a, port_b = free_port(), free_port()
    base = dict(
        group=topics.group,
        topics=topics.env(),
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_CALLBACKS__PUBLIC_URL=f"http://127.0.0.1:{port_b}",
        MODERATION_CALLBACKS__POLL_AFTER_S="600",
        MODERATION_CALLBACKS__DEADLINE_S="120",
        MODERATION_KAFKA__CLIENT_CONFIG='{"session.timeout.ms": "6000"}',
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    a = ConsumerProcess(
        consumer_env(kafka_bootstrap, sim.url, **base, MODERATION_CALLBACKS__PORT=str(port_a)),
        log_path=logs["a"],
    ).start()
    b: ConsumerProcess | None = None
    try:
        _wait_for_log(logs["a"], lambda line: line.get("msg") == "partitions assigned")
        b = ConsumerProcess(
            consumer_env(kafka_bootstrap, sim.url, **base, MODERATION_CALLBACKS__PORT=str(port_b)),
            log_path=logs["b"],
        ).start()
        _wait_for_log(
            logs["b"],
            lambda line: (
                line.get("msg") == "partitions assigned"
                and any(p.startswith(topics.input) for p in line["partitions"])
            ),
        )
        videos = [video([800 + i, 900 + i], upload_id=f"vid-{i}") for i in range(8)]
        produce_uploads(kafka_bootstrap, topics.input, videos)
        expected = {v.upload_id for v in videos}
        with VerdictCollector(kafka_bootstrap, topics.verdicts) as verdicts:
            assert verdicts.wait_until(lambda c: expected <= set(c), timeout=120)
    finally:
        for process in (a, b):
            if process is not None:
                process.terminate()
    by_process = {
        name: {line["upload_id"] for line in json_log_lines(path) if line.get("msg") == "verdict"}
        for name, path in logs.items()
    }
    print(f"\nverdicts by process: a={len(by_process['a'])} b={len(by_process['b'])}")
    assert by_process["a"] and by_process["b"], "both processes must have owned some videos"
    assert by_process["a"] | by_process["b"] >= expected
    found = {v.upload_id: v for v in iter_verdicts(kafka_bootstrap, topics.verdicts, timeout=5)}
    for upload_id in expected:
        assert [c.outcome for c in found[upload_id].checks] == ["ok", "ok"], upload_id
    assert sim.stats()["requests"].get("task_get", 0) == 0  # completed by callbacks, not by polling
    relayed_at_b = [
        line for line in json_log_lines(logs["a"]) if line.get("msg") == "callback receiver listening"
    ]
    assert relayed_at_b, "process A runs its own receiver too"
