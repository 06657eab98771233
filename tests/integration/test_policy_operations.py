"""Policy operations on the real broker: a policy change (a ConfigMap-style symlink swap) applies to
later records without a restart, an invalid change is refused while the old policy keeps deciding,
SIGHUP reloads; a shadow policy's disagreements reach the shadow topic; a backtest over the run's
verdicts matches what the candidate decides when it is the live policy."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.checks.builtin import default_registry
from consumer.checks.registry import Feeds
from consumer.cli import policy as policy_tools
from consumer.config import Settings
from consumer.core.records import Decision, MediaType, ModerationVerdict, UploadEvent
from consumer.policy.backtest import VerdictRange, read_verdict_file, read_verdict_topic
from consumer.policy.shadow import ShadowDecision
from consumer.serde import AvroCodec
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    json_log_lines,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until,
)

from .conftest import ReadTopic, Topics

pytestmark = pytest.mark.integration

BASE: dict[str, Any] = {
    "version": "v1",
    "classification": {"visual": {"general_nsfw": {"review": 0.5, "block": 0.9}}},
    "similarity": {"review": 0.85, "block": 0.9},
}


def policy_text(version: str, tenants: dict[str, Any] | None = None, **changes: Any) -> str:
    return yaml.safe_dump({**BASE, **changes, "version": version, "tenants": tenants or {}})


def publish(directory: Path, generation: int, text: str) -> None:
    """Write the policy as the kubelet updates a ConfigMap volume: a new timestamped directory, then
    the ``..data`` symlink swapped to it in one rename; ``policy.yaml`` links through ``..data``."""
    directory.mkdir(exist_ok=True)
    version_dir = directory / f"..2026_12_04_{generation}"
    version_dir.mkdir()
    (version_dir / "policy.yaml").write_text(text)
    staged = directory / "..data_tmp"
    os.symlink(version_dir.name, staged)
    os.replace(staged, directory / "..data")
    if not (directory / "policy.yaml").is_symlink():
        os.symlink("..data/policy.yaml", directory / "policy.yaml")


def batch(image: bytes, name: str) -> list[UploadEvent]:
    return [upload(MediaType.IMAGE, upload_id=f"{name}-{t}", tenant=t, data=image) for t in ("acme", "beta")]


def decided(bootstrap: str, topic: str, uploads: list[UploadEvent]) -> dict[str, tuple[str, str]]:
    """upload id -> (decision, policy version) of ``uploads``' verdicts."""
    ids = {u.upload_id for u in uploads}
    found = read_verdicts(bootstrap, topic, ids, timeout=90)
    return {v.upload_id: (v.decision.value, v.policy_version) for v in found if v.upload_id in ids}


def logged(log: Path, text: str, within_s: float = 60) -> bool:
    return wait_until(lambda: any(text in str(line.get("msg", "")) for line in json_log_lines(log)), within_s)


def test_a_policy_change_applies_without_a_restart_and_sighup_reloads(
    kafka_bootstrap: str, sim: SimulatorProcess, topics: Topics, tmp_path: Path
) -> None:
    image = image_bytes(make_image(1501, (64, 64)))
    sim.force_scores({"general_nsfw": 0.7}, media=image)
    configmap = tmp_path / "policy"
    publish(configmap, 1, policy_text("v1"))
    env = consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_POLICY_FILE=str(configmap / "policy.yaml"),
        MODERATION_POLICY_RELOAD_INTERVAL_S="0.2",
    )
    log = tmp_path / "first.log"
    first = ConsumerProcess(env, log).start()
    try:
        uploads = batch(image, "one")
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        assert decided(kafka_bootstrap, topics.verdicts, uploads) == {
            "one-acme": ("REVIEW", "v1"),
            "one-beta": ("REVIEW", "v1"),
        }, log.read_text()[-3000:]

        acme_blocks = {"acme": {"classification": {"visual": {"general_nsfw": {"block": 0.6}}}}}
        publish(configmap, 2, policy_text("v2", acme_blocks))
        assert logged(log, "live policy reloaded (file changed): version v2"), log.read_text()[-3000:]
        uploads = batch(image, "two")
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        assert decided(kafka_bootstrap, topics.verdicts, uploads) == {
            "two-acme": ("BLOCK", "v2"),  # the tenant's override
            "two-beta": ("REVIEW", "v2"),  # untouched
        }

        invalid = {"acme": {"classification": {"visual": {"general_nsfw": {"review": 0.95}}}}}
        publish(configmap, 3, policy_text("v3", invalid))
        refusal = "policy tenants.acme.classification.visual.general_nsfw: block must be >= review"
        assert logged(log, refusal), log.read_text()[-3000:]
        refused = [line for line in json_log_lines(log) if refusal in str(line.get("msg"))]
        assert (
            len(refused) == 1 and refused[0]["level"] == "error" and "version v2 stays" in refused[0]["msg"]
        )
        uploads = batch(image, "three")
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        assert decided(kafka_bootstrap, topics.verdicts, uploads) == {
            "three-acme": ("BLOCK", "v2"),  # the old policy keeps deciding
            "three-beta": ("REVIEW", "v2"),
        }
        assert first.terminate() == 0
    finally:
        if first.alive:
            first.kill()

    # SIGHUP, with the file watch off: only the signal can make it read the file again (an invalid
    # policy stops a start, so a valid one goes back first)
    publish(configmap, 4, policy_text("v2", acme_blocks))
    log = tmp_path / "second.log"
    second = ConsumerProcess({**env, "MODERATION_POLICY_RELOAD_INTERVAL_S": "0"}, log).start()
    try:
        assert logged(log, "consuming"), log.read_text()[-3000:]
        beta_blocks = {"beta": {"classification": {"visual": {"general_nsfw": {"block": 0.65}}}}}
        publish(configmap, 5, policy_text("v4", beta_blocks))
        assert second.process is not None
        second.process.send_signal(signal.SIGHUP)
        assert logged(log, "live policy reloaded (SIGHUP): version v4"), log.read_text()[-3000:]
        uploads = batch(image, "four")
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        assert decided(kafka_bootstrap, topics.verdicts, uploads) == {
            "four-acme": ("REVIEW", "v4"),
            "four-beta": ("BLOCK", "v4"),
        }
        assert second.terminate() == 0
    finally:
        if second.alive:
            second.kill()


SCORES = (0.2, 0.55, 0.7, 0.85, 0.95)
CANDIDATE: dict[str, Any] = {
    **BASE,
    "version": "candidate-1",
    "classification": {"visual": {"general_nsfw": {"review": 0.6, "block": 0.8}}},
    "tenants": {"beta": {"classification": {"visual": {"general_nsfw": {"block": 0.97}}}}},
}


def test_shadow_decisions_and_a_backtest_match_the_candidate_deciding_live(
    kafka_bootstrap: str,
    sim: SimulatorProcess,
    make_topics: Callable[..., Topics],
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    import asyncio

    live_file, candidate_file = tmp_path / "live.yaml", tmp_path / "candidate.yaml"
    live_file.write_text(policy_text("v1"))
    candidate_file.write_text(yaml.safe_dump(CANDIDATE))
    images = []
    for i, nsfw in enumerate(SCORES):
        data = image_bytes(make_image(1600 + i, (64, 64)))
        sim.force_scores({"general_nsfw": nsfw}, media=data)
        images.append(data)
    uploads = [
        upload(MediaType.IMAGE, upload_id=f"u{i}-{tenant}", tenant=tenant, data=data)
        for i, data in enumerate(images)
        for tenant in ("acme", "beta")
    ]
    first, second = make_topics(), make_topics()
    produce_uploads(kafka_bootstrap, first.input, uploads)
    produce_uploads(kafka_bootstrap, second.input, uploads)
    ids = {u.upload_id for u in uploads}

    async def run(settings: Settings) -> None:
        async with running_service(settings):
            await asyncio.to_thread(
                read_verdicts, kafka_bootstrap, settings.kafka.verdict_topic, ids, timeout=90
            )

    shadowed = settings_for(first).model_copy(
        update={"policy_file": live_file, "shadow_policy_file": candidate_file}
    )
    as_live = settings_for(second).model_copy(update={"policy_file": candidate_file})
    asyncio.run(run(shadowed))
    asyncio.run(run(as_live))

    live = {v.upload_id: v for v in read_verdicts(kafka_bootstrap, first.verdicts, ids)}
    truth = {v.upload_id: v.decision for v in read_verdicts(kafka_bootstrap, second.verdicts, ids)}
    assert set(live) == set(truth) == ids
    assert {v.policy_version for v in live.values()} == {"v1"}  # live verdicts untouched by the shadow
    assert {v.decision for v in live.values()} == {Decision.ALLOW, Decision.REVIEW, Decision.BLOCK}
    expected = Counter((live[u].decision, truth[u]) for u in ids)
    assert any(a is not b for a, b in expected)  # the candidate changes something
    assert (Decision.BLOCK, Decision.REVIEW) in expected  # beta's raised block weakens a BLOCK

    disagreements = {u: truth[u] for u in ids if truth[u] is not live[u].decision}
    codec = AvroCodec()
    shadows: list[ShadowDecision] = read_topic(
        first.shadow,
        len(disagreements),
        decode=lambda m: ShadowDecision.from_avro(codec.decode(m.value(), "ShadowDecision")),
    )
    assert {s.upload_id: s.shadow_decision for s in shadows} == disagreements
    assert all(s.live_decision is live[s.upload_id].decision for s in shadows)
    assert {s.shadow_policy_version for s in shadows} == {"candidate-1"}

    registry = default_registry()
    lines: list[str] = []
    verdicts = read_verdict_topic(settings_for(first), VerdictRange(last=len(ids)), first.verdicts)
    result = policy_tools.backtest(verdicts, candidate_file, registry, as_json=True, echo=lines.append)
    assert dict(result.matrix) == dict(expected)
    assert result.undecidable_count == 0
    assert result.weakened_count == expected[(Decision.BLOCK, Decision.REVIEW)]
    assert registry.fed(Feeds.SIMILARITY) == {"similarity"}

    # the same verdicts from a file, and through the command line
    dump = tmp_path / "verdicts.jsonl"
    dump.write_text("".join(_json_line(v) for v in live.values()))
    from_file = policy_tools.backtest(read_verdict_file(dump), candidate_file, registry, echo=lines.append)
    assert dict(from_file.matrix) == dict(expected)
    assert "live \\ candidate" in lines[-1]


def _json_line(verdict: ModerationVerdict) -> str:
    import json

    return json.dumps(verdict.to_avro()) + "\n"
