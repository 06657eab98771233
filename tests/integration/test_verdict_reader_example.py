"""``examples/verdict_reader.py``, the downstream reader users copy: confluent-kafka alone reads the
verdicts and dead letters of a run, in the current version and pinned to the first one; it never
shows a record of an aborted transaction (``read_committed``) and prints a duplicated verdict once
(it deduplicates on ``verdict_id``)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.config import Settings
from consumer.core.records import MediaType
from consumer.schema_registry import codec_for
from consumer.serde import decode_blocking, default_schema_dir
from moderation_devtools.stack import iter_messages, produce_uploads, read_dead_letters, read_verdicts, upload

from .conftest import Topics
from .examples import assert_stands_alone, in_transaction, own_lines

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verdict_reader.py"


def test_the_example_imports_nothing_of_ours() -> None:
    assert_stands_alone(EXAMPLE)


async def test_the_example_reader_prints_the_verdicts_of_a_run(
    kafka_bootstrap: str,
    topics: Topics,
    registry_url: str,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
) -> None:
    settings = settings_for(topics, schema_registry={"url": registry_url, "auto_register": True})
    uploads = [
        upload(MediaType.TEXT, text="Lovely sunset at the beach today!"),
        upload(MediaType.TEXT, text="Buy now!!! free money, click here"),
        upload(MediaType.TEXT, text="I am going to kill you tomorrow"),
    ]
    refused = upload(MediaType.TEXT, text="hello", tenant="no spaces allowed")
    with contextlib.closing(codec_for(settings)) as codec:
        produce_uploads(kafka_bootstrap, topics.input, [*uploads, refused], codec=codec)
        async with running_service(settings):
            await asyncio.to_thread(
                read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, codec=codec
            )
            letters = await asyncio.to_thread(read_dead_letters, kafka_bootstrap, topics.dlq, 1, codec=codec)
        assert [letter.upload_id for letter, _ in letters] == [refused.upload_id]
        # what at_least_once can do after a crash: the same verdicts written again (same bytes, so
        # the same verdict_id); and what exactly_once leaves behind an aborted transaction: a verdict
        # no read_committed reader may see
        written = [
            (msg.key(), msg.value() or b"")
            for msg in iter_messages(kafka_bootstrap, topics.verdicts, timeout=30)
            if msg.key() is not None
        ][:3]
        assert len(written) == 3
        in_transaction(kafka_bootstrap, topics.verdicts, written, abort=False, name="example")
        verdict = decode_blocking(codec, written[0][1], "ModerationVerdict", topics.verdicts)
        ghost = {**verdict, "upload_id": "aborted-upload", "verdict_id": "aborted-verdict"}
        ghost_bytes = codec.encode("ModerationVerdict", ghost, topic=topics.verdicts)
        in_transaction(
            kafka_bootstrap, topics.verdicts, [(b"aborted-upload", ghost_bytes)], abort=True, name="example"
        )

    def reader(group: str, *extra: str) -> list[str]:
        command = [sys.executable, str(EXAMPLE), "--bootstrap", kafka_bootstrap, "--registry", registry_url]
        command += ["--group", group, "--idle-timeout", "15", *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and not own_lines(done.stderr), done.stderr
        return done.stdout.splitlines()

    lines = reader(f"{topics.group}-reader", "--topic", topics.verdicts, "--topic", topics.dlq)
    decisions = {line.split()[0]: line.split()[1] for line in lines}
    assert decisions == {
        uploads[0].upload_id: "ALLOW",
        uploads[1].upload_id: "REVIEW",
        uploads[2].upload_id: "BLOCK",
        refused.upload_id: "DEAD",
    }
    assert len(lines) == 4  # each duplicated verdict once, the aborted one never
    assert all("text:" in line for line in lines if " REVIEW " in line or " BLOCK " in line)  # the reasons
    assert any("InvalidRecordError" in line for line in lines if " DEAD " in line)
    pinned = reader(
        f"{topics.group}-pinned",
        "--topic",
        topics.verdicts,
        "--reader-schema",
        str(default_schema_dir() / "history/ModerationVerdict.v1.avsc"),
    )
    assert sorted(pinned) == sorted(line for line in lines if " DEAD " not in line)
