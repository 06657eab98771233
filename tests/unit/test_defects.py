"""Defects found while splitting the service (issue 11), each with the test that would have caught it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from consumer.callbacks.receiver import AsyncTasks, Correlator
from consumer.checks.media import Media
from consumer.checks.pipeline import Pipeline, SourcePosition
from consumer.checks.providers import Checked
from consumer.checks.providers.hive import HiveHashMatcher, HiveTasks, HiveTransport
from consumer.checks.retry import RetryPolicy
from consumer.cli.main import main
from consumer.config import load_settings
from consumer.core.records import Decision, MediaType, SimilarityMatch, UploadEvent
from consumer.errors import ConfigError, ProviderAnswerError, TransientError
from consumer.policy.decision import Frame
from consumer.policy.tenants import load_policies
from consumer.runtime import supervisor
from consumer.runtime.workers import Worker
from consumer.telemetry import metrics
from consumer.transports.httpclient import HttpxClient
from consumer.wiring import build_pipeline, check_settings
from tests.factories import active_checks

SRC = SourcePosition("uploads", 0, 1)

NEXT_LOOP_TURN = 0  # sleeping 0 s: one turn of the event loop, no waiting


class _DownIndex:
    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        raise TransientError("ImageSearch HTTP 503", check="similarity")

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        return ""

    async def remove(self, media: Media, tenant: str) -> str | None:
        return None


async def test_a_failed_huawei_similarity_call_is_recorded_as_huawei() -> None:
    pipeline = Pipeline(active_checks(index=_DownIndex(), provider="huawei"), load_policies())
    verdict = await pipeline.moderate(UploadEvent("u", "t", "u", MediaType.IMAGE, 0, media_bytes=b"x"), SRC)
    (run,) = [r for r in verdict.checks if r.check == "similarity"]  # type: ignore[union-attr]
    assert (run.provider, run.outcome) == ("huawei", "unavailable")


async def test_check_durations_are_observed() -> None:
    class Visual:
        async def classify(self, content: Media | str) -> Checked[Sequence[Frame]]:
            return Checked([Frame(0.0, {"general_nsfw": 0.1})], "fake")

    def count() -> float:
        return sum(
            s.value
            for m in metrics.CHECK_DURATION.collect()
            for s in m.samples
            if s.name.endswith("_count") and s.labels == {"check": "visual", "outcome": "ok"}
        )

    before = count()
    pipeline = Pipeline(active_checks(visual=Visual()), load_policies())
    await pipeline.moderate(UploadEvent("u", "t", "u", MediaType.IMAGE, 0, media_bytes=b"x"), SRC)
    assert count() == before + 1


async def test_pending_async_tasks_are_counted_while_they_wait() -> None:
    tasks = AsyncTasks(Correlator(), "http://cb", poll_after_s=30, poll_interval_s=30)
    before = metrics.PENDING_TASKS._value.get()
    waiting = asyncio.create_task(tasks.wait("task-1", lambda _: asyncio.sleep(NEXT_LOOP_TURN, None)))
    await asyncio.sleep(NEXT_LOOP_TURN)
    assert metrics.PENDING_TASKS._value.get() == before + 1
    tasks.correlator.deliver({"task_id": "task-1", "status": []})
    await waiting
    assert metrics.PENDING_TASKS._value.get() == before


def test_only_the_keys_of_checks_that_run_are_required(tmp_path: Path) -> None:
    settings = load_settings(hive={"text_key": "t-key"}, processing={"checks": ["text"]})
    assert check_settings(settings).live.version  # no csam, visual or index key needed
    with pytest.raises(ConfigError, match=r"hive\.csam_key"):
        check_settings(load_settings(hive={"text_key": "t-key"}, processing={"checks": ["text", "csam"]}))


def test_the_policy_is_read_once_when_given(tmp_path: Path) -> None:
    settings = load_settings(
        hive={"text_key": "t"}, processing={"checks": ["text"]}, policy_file=str(tmp_path / "gone.yaml")
    )
    pipeline = build_pipeline(
        settings, HttpxClient(httpx.MockTransport(lambda _: httpx.Response(500))), policy=load_policies()
    )
    assert pipeline.policy.version.startswith("default-")


def _answer(body: dict[str, Any]) -> HiveTasks:
    http = HttpxClient(httpx.MockTransport(lambda _: httpx.Response(200, json=body)))
    return HiveTasks(HiveTransport(http, "http://hive.test", SecretStr("k" * 8), "csam", RetryPolicy(1)))


CLASSES = {
    "status": [
        {
            "status": {"code": "0"},
            "response": {
                "output": [
                    {
                        "time": 0,
                        "classes": [
                            {"class": "csam", "score": 0.95},
                            {"class": "pornography", "score": 0.03},
                            {"class": "other", "score": 0.02},
                        ],
                    }
                ]
            },
        }
    ]
}
NOTHING = {"status": [{"status": {"code": "0"}, "response": {"output": [{"time": 0}]}}]}


async def test_csam_endpoint_chooses_what_the_answer_is_read_for() -> None:
    hashed = await HiveHashMatcher(_answer(CLASSES)).match(Media(data=b"x"))
    assert hashed.value.classes == ()  # hash matching only: a classifier's classes are not read
    combined = await HiveHashMatcher(_answer(CLASSES), combined=True).match(Media(data=b"x"))
    assert combined.value.classes[0].scores["csam"] == 0.95
    with pytest.raises(ProviderAnswerError, match="neither a match nor classes"):
        await HiveHashMatcher(_answer(NOTHING), combined=True).match(Media(data=b"x"))


@pytest.mark.parametrize(
    ("endpoint", "decision"), [("hash", Decision.ALLOW), ("combined", Decision.ESCALATE)]
)
async def test_csam_endpoint_setting_reaches_the_matcher(endpoint: str, decision: Decision) -> None:
    settings = load_settings(
        hive={"csam_key": "c", "csam_endpoint": endpoint},
        processing={"checks": ["csam"], "result_cache_size": 0},
    )
    http = HttpxClient(httpx.MockTransport(lambda _: httpx.Response(200, json=CLASSES)))
    pipeline = build_pipeline(settings, http)
    verdict = await pipeline.moderate(UploadEvent("u", "t", "u", MediaType.IMAGE, 0, media_bytes=b"x"), SRC)
    assert verdict.decision is decision  # type: ignore[union-attr]


def test_a_worker_learns_its_place_from_its_command_line_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The supervisor passes index, count and directory as ``run`` options (no environment); a
    garbage value is refused with a clear error, never a traceback."""
    place = supervisor.worker_arguments(Worker(2, 3, tmp_path))
    assert place == ["--worker-index", "2", "--worker-count", "3", "--workers-dir", str(tmp_path)]
    for bad in (["--worker-index", "not a number"], ["--worker-index", "-1"], ["--worker-count", "0"]):
        with pytest.raises(SystemExit) as exited:
            main(["run", *bad])
        assert exited.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_retries_are_classified_by_error_type_never_by_message_text() -> None:
    from consumer.checks.providers.http import count_retry
    from consumer.errors import ProviderTimeout

    def retries(reason: str) -> float:
        return (
            metrics.REGISTRY.get_sample_value(
                "moderation_provider_retries_total", {"check": "visual", "reason": reason}
            )
            or 0.0
        )

    before = retries("timeout"), retries("transport"), retries("answer")
    count_retry(ProviderTimeout("visual: no answer", check="visual"))
    count_retry(TransientError("visual: a message that mentions a timeout", check="visual"))
    count_retry(ProviderAnswerError("visual: Hive answer: output is not a list", check="visual"))
    assert (retries("timeout"), retries("transport"), retries("answer")) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
    )
