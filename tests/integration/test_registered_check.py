"""A check the product does not ship, added the way the README's "Adding a check" says: a module
(below: the client and its declaration), its settings (``check_options.ai_generated``) and its
policy thresholds. Nothing in the service changes; it runs through the real broker and service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel, SecretStr

from consumer.checks.builtin import default_registry
from consumer.checks.media import MediaFetcher
from consumer.checks.providers import Checked
from consumer.checks.providers.http import ProviderEndpoint
from consumer.checks.registry import BuildContext, CheckClient, CheckSpec, Feeds, Subject
from consumer.core.records import Decision, MediaType, ModerationVerdict
from consumer.errors import PermanentError, ProviderAnswerError, TransientError
from consumer.policy.decision import Frame
from consumer.transports.httpclient import Answer
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import produce_uploads, read_verdicts, upload

from .conftest import Topics

pytestmark = pytest.mark.integration


# --- the check's module --------------------------------------------------------------------------
class DetectorOptions(BaseModel):
    """``check_options.ai_generated``: where the detector answers, and its token."""

    url: str
    token: SecretStr


def _frames(answer: Answer) -> list[Frame]:
    if answer.status_code >= 500:
        raise TransientError(f"ai_generated: detector HTTP {answer.status_code}", check="ai_generated")
    if answer.status_code != 200:
        raise PermanentError(
            f"ai_generated: detector HTTP {answer.status_code}",
            check="ai_generated",
            status=answer.status_code,
        )
    score = answer.json().get("ai_generated")
    if not isinstance(score, float) or not 0.0 <= score <= 1.0:
        raise ProviderAnswerError("ai_generated: detector answer has no score", check="ai_generated")
    return [Frame(0.0, {"ai_generated": score, "not_ai_generated": 1.0 - score})]


class Detector:
    def __init__(self, endpoint: ProviderEndpoint, fetcher: MediaFetcher, options: DetectorOptions) -> None:
        self._endpoint, self._fetcher, self._options = endpoint, fetcher, options

    async def classify(self, subject: Subject) -> Checked[Sequence[Frame]]:
        assert subject.media is not None
        data = await self._fetcher.bytes_of(subject.media)
        headers = {"authorization": f"Bearer {self._options.token.get_secret_value()}"}
        frames, attempts = await self._endpoint.call(
            "POST", self._options.url, _frames, content=data, headers=headers
        )
        return Checked(frames, "detector", model="ai-detector", attempts=attempts)


def build_detector(ctx: BuildContext) -> CheckClient:
    endpoint = ProviderEndpoint(
        ctx.http, check="ai_generated", provider="detector", retry=ctx.retry, gate=ctx.gate
    )
    return CheckClient("detector", Detector(endpoint, ctx.fetcher, ctx.options).classify)


AI_GENERATED = CheckSpec(
    "ai_generated",
    Feeds.CLASSIFICATION,
    frozenset({MediaType.IMAGE}),
    build_detector,
    options=DetectorOptions,
    doc="images a generative model made",
)


# --- the test ------------------------------------------------------------------------------------
MARKED = b"synthetic"  # the fake detector scores images that carry this marker as generated
TOKEN = "detector-token-9"


@pytest.fixture
async def detector() -> AsyncIterator[tuple[str, list[str]]]:
    """A detector on a free loopback port: scores 0.97 for marked images, 0.02 otherwise."""
    seen: list[str] = []

    async def score(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization", ""))
        body = await request.read()
        return web.json_response({"ai_generated": 0.97 if MARKED in body else 0.02})

    app = web.Application()
    app.router.add_post("/v1/score", score)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1/score", seen
    finally:
        await runner.cleanup()


async def test_a_registered_check_runs_and_its_policy_decides(
    kafka_bootstrap: str,
    topics: Topics,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    detector: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    url, seen = detector
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: with-ai-2026.12\n"
        "classification:\n"
        "  ai_generated:\n"
        "    ai_generated: {review: 0.5, block: 0.9}\n"
    )
    registry = default_registry()
    registry.register(AI_GENERATED)
    settings = settings_for(topics, checks=["csam", "visual", "ai_generated"]).model_copy(
        update={
            "policy_file": policy,
            "check_options": {"ai_generated": {"url": url, "token": TOKEN}},
        }
    )
    generated = upload(MediaType.IMAGE, data=image_bytes(make_image(41)) + MARKED)
    photo = upload(MediaType.IMAGE, data=image_bytes(make_image(42)))
    produce_uploads(kafka_bootstrap, topics.input, [generated, photo])
    async with running_service(settings, registry=registry):
        got: list[ModerationVerdict] = await asyncio.to_thread(
            read_verdicts,
            kafka_bootstrap,
            topics.verdicts,
            {generated.upload_id, photo.upload_id},
            timeout=60,
        )
    verdicts = {v.upload_id: v for v in got}
    blocked, allowed = verdicts[generated.upload_id], verdicts[photo.upload_id]
    assert blocked.decision is Decision.BLOCK
    assert (blocked.reasons[0].check, blocked.reasons[0].label) == ("ai_generated", "ai_generated")
    assert allowed.decision is Decision.ALLOW
    run = next(c for c in blocked.checks if c.check == "ai_generated")
    assert (run.provider, run.model, run.outcome) == ("detector", "ai-detector", "ok")
    assert {c.check for c in allowed.checks} == {"csam", "visual", "ai_generated"}
    assert seen == [f"Bearer {TOKEN}"] * 2
