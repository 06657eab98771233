"""The consumer process stopped mid-stream (SIGTERM or SIGKILL) and restarted loses no upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumer.core.records import MediaType, UploadEvent
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    VerdictCollector,
    consumer_env,
    produce_uploads,
    upload,
    wait_until,
)

from .conftest import Topics

pytestmark = pytest.mark.integration


def _backlog(n_images: int, n_texts: int) -> list[UploadEvent]:
    images = [
        upload(MediaType.IMAGE, upload_id=f"img-{i}", data=image_bytes(make_image(1000 + i), "JPEG"))
        for i in range(n_images)
    ]
    texts = [upload(MediaType.TEXT, upload_id=f"txt-{i}", text=f"message number {i}") for i in range(n_texts)]
    return images + texts


def _env(kafka_bootstrap: str, sim: SimulatorProcess, topics: Topics) -> dict[str, str]:
    return consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_KAFKA__COMMIT_INTERVAL_MS="100",
        MODERATION_PROCESSING__MAX_IN_FLIGHT="8",
        # a killed member holds its partitions until the session times out
        MODERATION_KAFKA__CLIENT_CONFIG='{"session.timeout.ms": "6000"}',
    )


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
def test_stopped_and_restarted_consumer_loses_no_upload(
    stop: str, kafka_bootstrap: str, sim: SimulatorProcess, topics: Topics, tmp_path: object
) -> None:
    sim.admin("/_admin/latency", json={"median_ms": 50, "p99_ms": 150})
    uploads = _backlog(60, 540)
    expected = {u.upload_id for u in uploads}
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    env = _env(kafka_bootstrap, sim, topics)
    with VerdictCollector(kafka_bootstrap, topics.verdicts) as verdicts:
        first = ConsumerProcess(env, log_path=tmp_path / "first.log").start()  # type: ignore[operator]
        try:
            assert verdicts.wait_until(lambda c: len(c) >= 40, timeout=90), "first consumer made no progress"
        finally:
            if stop == "sigkill":
                first.kill()
            else:
                assert first.terminate() == 0
        stopped_at = len(verdicts.counts)
        assert stopped_at < len(expected), "the backlog finished before the stop; nothing was tested"
        second = ConsumerProcess(env, log_path=tmp_path / "second.log").start()  # type: ignore[operator]
        try:
            done = verdicts.wait_until(lambda c: expected <= set(c), timeout=120)
        finally:
            assert second.terminate() == 0
        account = verdicts.accounting(expected)
    print(f"\naccounting ({stop}): {account}, stopped after {stopped_at} verdicts")
    assert done and account["missing"] == 0
    if stop == "sigterm":
        assert account["duplicates"] == 0  # a graceful stop drains and commits everything it finished
    else:
        # at most what was in flight (8) plus what finished after the last commit (100 ms at ~200/s)
        assert account["duplicates"] <= 8 + 40


def test_work_finished_beyond_a_slow_record_is_not_redone_after_a_kill(
    kafka_bootstrap: str, sim: SimulatorProcess, make_topics: Any, tmp_path: Path
) -> None:
    """A video waits for a callback that never comes while the texts behind it in the same
    partition finish. The commit cannot pass the video, but its metadata records the texts: after
    kill -9 the next process redoes the video only."""
    from moderation_devtools.samples import make_video

    topics = make_topics(input_partitions=1, other_partitions=1)
    sim.set_faults({"callback_drop": 1.0})
    slow = upload(MediaType.VIDEO, upload_id="slow-video", data=make_video([1, 2], size=(160, 120)))
    texts = [upload(MediaType.TEXT, upload_id=f"t-{i}", text=f"note {i}") for i in range(20)]
    produce_uploads(kafka_bootstrap, topics.input, [slow, *texts])
    env = _env(kafka_bootstrap, sim, topics)
    env["MODERATION_CALLBACKS__POLL_AFTER_S"] = "600"
    with VerdictCollector(kafka_bootstrap, topics.verdicts) as verdicts:
        first = ConsumerProcess(env, log_path=tmp_path / "first.log").start()
        try:
            assert verdicts.wait_until(lambda c: {t.upload_id for t in texts} <= set(c), timeout=90)
            assert _wait_for_commit_metadata(kafka_bootstrap, topics, set(range(1, 21)), deadline_s=30)
        finally:
            first.kill()
        sim.set_faults({"callback_drop": 0.0})
        second = ConsumerProcess(env, log_path=tmp_path / "second.log").start()
        try:
            assert verdicts.wait_until(lambda c: "slow-video" in c, timeout=90)
        finally:
            assert second.terminate() == 0
        account = verdicts.accounting({slow.upload_id, *(t.upload_id for t in texts)})
    print(f"\naccounting (slow head, kill -9): {account}")
    assert account["missing"] == 0 and account["duplicates"] == 0


def _wait_for_commit_metadata(bootstrap: str, topics: Any, finished: set[int], deadline_s: float) -> bool:
    """True once the group's commit for the partition records ``finished`` beyond its offset."""
    from confluent_kafka import Consumer, TopicPartition

    from consumer.core import offsetmap

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": topics.group, "enable.auto.commit": False})
    try:

        def recorded() -> bool:
            (tp,) = probe.committed([TopicPartition(topics.input, 0)], timeout=5)
            return bool(tp.offset >= 0 and finished <= offsetmap.decode(tp.offset, tp.metadata))

        return wait_until(recorded, deadline_s)
    finally:
        probe.close()
