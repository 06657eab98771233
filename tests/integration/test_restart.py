"""The consumer process stopped mid-stream (SIGTERM or SIGKILL) and restarted loses no upload."""

from __future__ import annotations

import pytest

from consumer.devtools.samples import image_bytes, make_image
from consumer.devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    VerdictCollector,
    consumer_env,
    produce_uploads,
    upload,
)
from consumer.records import MediaType, UploadEvent

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
