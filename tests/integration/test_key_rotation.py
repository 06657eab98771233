"""A provider key rotated under traffic, on the real broker, the real service and the simulator:
the keys are files laid out as the kubelet mounts a Secret; while uploads flow the simulator
switches to new keys only (the old ones now refused) and the Secret's ``..data`` symlink is swapped
to files holding them. The same process goes on (no restart): once the swap has settled (the
service counted the new keys applied) every upload gets a real verdict, none fails closed, and
every upload of the run has its one verdict."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.config import Settings, load_settings
from consumer.core.records import MediaType, ModerationVerdict, UploadEvent
from consumer.telemetry import metrics
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import (
    SimulatorProcess,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until_async,
)
from moderation_simulator.state import DEFAULT_HUAWEI_TOKEN, DEFAULT_KEYS

from .conftest import Topics

pytestmark = pytest.mark.integration

OLD_KEYS = {check: DEFAULT_KEYS[check] for check in ("visual", "csam", "index", "text")}
NEW_KEYS = {"visual": "rotated-visual-key", "csam": "rotated-csam-key", "index": "rotated-index-key"}
NEW_KEYS |= {"text": "rotated-text-key"}
NEW_TOKEN = "rotated-huawei-token"


def publish(directory: Path, generation: int, files: dict[str, str]) -> None:
    """Write the keys as the kubelet updates a Secret volume: a new timestamped directory, then the
    ``..data`` symlink swapped to it in one rename; each key's file links through ``..data``."""
    target = directory / f"..2026_12_06_{generation}"
    target.mkdir(parents=True)
    for name, value in files.items():
        (target / name).write_text(value + "\n")
        if not (directory / name).is_symlink():
            os.symlink(f"..data/{name}", directory / name)
    staged = directory / "..data_tmp"
    os.symlink(target.name, staged)
    os.replace(staged, directory / "..data")


def key_files(hive: dict[str, str], token: str) -> dict[str, str]:
    return {**{f"hive-{check}-key": key for check, key in hive.items()}, "huawei-token": token}


def settings_with_key_files(
    bootstrap: str, sim: SimulatorProcess, t: Topics, secrets: Path, similarity: str
) -> Settings:
    """The integration settings (``settings_for``'s), every provider key from the Secret's files."""
    return load_settings(
        kafka={
            "bootstrap_servers": bootstrap,
            "group_id": t.group,
            "create_topics": False,
            "commit_interval_ms": 100,
            **t.env(),
        },
        hive={
            "base_url": sim.url,
            **{f"{check}_key_file": str(secrets / f"hive-{check}-key") for check in NEW_KEYS},
        },
        huawei={
            "base_url": sim.url,
            "token_file": str(secrets / "huawei-token"),
            "project_id": "proj",
            "instance": "moderation",
        },
        processing={"similarity": similarity, "async_media": []},
        health={"host": "127.0.0.1", "port": 0},
        media={"allow_networks": ["127.0.0.1/32"]},
        secret_reload_interval_s=0.1,
    )


def applied(setting: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "moderation_secret_reloads_total", {"setting": setting, "outcome": "applied"}
    )
    return sample or 0.0


def uploads(name: str, count: int, first_seed: int) -> list[UploadEvent]:
    """Distinct images (no cached result stands in for a provider call) and a text each fifth."""
    made = []
    for i in range(count):
        if i % 5 == 4:
            made.append(
                upload(MediaType.TEXT, upload_id=f"{name}-{i}", text=f"hello number {first_seed + i}")
            )
        else:
            data = image_bytes(make_image(first_seed + i, (160, 120)))
            made.append(upload(MediaType.IMAGE, upload_id=f"{name}-{i}", data=data, content_type="image/png"))
    return made


def failed_closed(verdict: ModerationVerdict) -> bool:
    return any(r.label.startswith(("check_unavailable", "check_rejected")) for r in verdict.reasons)


async def verdicts_of(bootstrap: str, topic: str, batch: list[UploadEvent]) -> dict[str, ModerationVerdict]:
    """``batch``'s verdicts by upload id (the topic's others are left out)."""
    ids = {u.upload_id for u in batch}
    found = await asyncio.to_thread(read_verdicts, bootstrap, topic, ids, timeout=90)
    return {v.upload_id: v for v in found if v.upload_id in ids}


@pytest.mark.parametrize("similarity", ["hive", "huawei"])
async def test_a_key_rotated_under_traffic_takes_effect_without_a_restart(
    kafka_bootstrap: str,
    sim: SimulatorProcess,
    topics: Topics,
    running_service: Callable[..., Any],
    tmp_path: Path,
    similarity: str,
) -> None:
    secrets = tmp_path / "provider-keys"
    publish(secrets, 1, key_files(OLD_KEYS, DEFAULT_HUAWEI_TOKEN))
    settings = settings_with_key_files(kafka_bootstrap, sim, topics, secrets, similarity)
    rotated = ["hive.visual_key", "hive.csam_key", "hive.text_key"]
    rotated.append("hive.index_key" if similarity == "hive" else "huawei.token")
    before_rotation = {setting: applied(setting) for setting in rotated}

    async with running_service(settings) as process:
        first = uploads("before", 10, 0)
        produce_uploads(kafka_bootstrap, topics.input, first)
        got = await verdicts_of(kafka_bootstrap, topics.verdicts, first)
        assert set(got) == {u.upload_id for u in first}
        assert not [v for v in got.values() if failed_closed(v)], "the old keys work before the rotation"

        # traffic in flight while the keys rotate: the provider refuses the old keys at once
        during = uploads("during", 20, 100)
        produce_uploads(kafka_bootstrap, topics.input, during)
        async with httpx.AsyncClient(timeout=10) as admin:
            answer = await admin.post(f"{sim.url}/_admin/keys", json={**NEW_KEYS, "huawei": NEW_TOKEN})
        assert answer.status_code == 200, answer.text
        publish(secrets, 2, key_files(NEW_KEYS, NEW_TOKEN))
        settled = await wait_until_async(lambda: all(applied(s) > before_rotation[s] for s in rotated), 30)
        assert settled, "the service did not apply the new key files"

        after = uploads("after", 20, 200)
        produce_uploads(kafka_bootstrap, topics.input, after)
        got_after = await verdicts_of(kafka_bootstrap, topics.verdicts, after)
        assert set(got_after) == {u.upload_id for u in after}
        closed = {v.upload_id: [r.label for r in v.reasons] for v in got_after.values() if failed_closed(v)}
        assert closed == {}, "uploads failed closed after the new keys were in force"

        got_during = await verdicts_of(kafka_bootstrap, topics.verdicts, during)
        assert set(got_during) == {u.upload_id for u in during}  # each has its verdict, real or closed
        assert process.processed == len(first) + len(during) + len(after)  # one process all along

        async with httpx.AsyncClient(timeout=10) as admin:
            counts = (await admin.get(f"{sim.url}/_admin/keys")).json()
        assert counts["visual"] == 1 and counts["huawei"] == 1  # only the new keys accepted since the switch
