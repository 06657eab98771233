"""``python -m consumer dlq replay``: dead letters chosen by error class go back to the input topic
after a fix and get their verdicts; the others stay where they are."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from consumer.core.records import MediaType
from moderation_devtools.stack import (
    SimulatorProcess,
    consumer_env,
    produce_uploads,
    read_dead_letters,
    read_verdicts,
    upload,
)

from .conftest import Topics

pytestmark = pytest.mark.integration


def replay_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "dlq", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_replay_by_error_class_after_a_fix(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    accounting: Callable[[str], None],
) -> None:
    big = [upload(MediaType.TEXT, upload_id=f"big-{i}", text="words " * 12_000) for i in range(2)]
    produce_uploads(kafka_bootstrap, topics.input, big, raw=[(b"junk", b"not avro at all")])
    async with running_service(settings_for(topics, max_record_bytes=65_536)):
        letters = await asyncio.to_thread(read_dead_letters, kafka_bootstrap, topics.dlq, 3)
    assert sorted(letter.failure.error_class for letter, _ in letters) == [
        "InvalidRecordError",
        "InvalidRecordError",
        "SerializationError",
    ]

    env = consumer_env(kafka_bootstrap, sim.url, group=topics.group, topics=topics.env())
    dry = replay_cli(env, "--error-class", "InvalidRecordError", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would replay") == 2 and "replayed 0" in dry.stdout

    bad = replay_cli(env, "--from-offset", "5", "--to-offset", "1")
    assert bad.returncode == 2 and "empty offset range" in bad.stderr and "Traceback" not in bad.stderr

    done = replay_cli(env, "--error-class", "InvalidRecordError")
    assert done.returncode == 0, done.stderr
    assert "matched 2, replayed 2" in done.stdout, done.stdout

    # the fix: the size limit raised; the replayed uploads now get verdicts, the junk stays dead
    async with running_service(settings_for(topics, max_record_bytes=1 << 20)):
        verdicts = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in big}, timeout=60
        )
    assert {v.upload_id for v in verdicts} == {u.upload_id for u in big}
    accounting(
        f"accounting: uploads=3 verdicts={len(verdicts)} duplicates=0 dead_letters=1 missing=0 replayed=2"
    )
