"""``examples/verdict_reader.py``, the downstream reader users copy: confluent-kafka alone reads the
verdicts of a run, in the current version and pinned to the previous one."""

from __future__ import annotations

import ast
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
from consumer.serde import default_schema_dir
from moderation_devtools.stack import produce_uploads, read_verdicts, upload

from .conftest import Topics

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verdict_reader.py"


def test_the_example_imports_nothing_of_ours() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    ours = {
        m for m in modules if m.split(".")[0] in ("consumer", "moderation_simulator", "moderation_devtools")
    }
    assert not ours and any(m.startswith("confluent_kafka") for m in modules)


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
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    with contextlib.closing(codec_for(settings)) as codec:
        async with running_service(settings):
            await asyncio.to_thread(
                read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, codec=codec
            )

    def reader(group: str, *extra: str) -> list[str]:
        command = [sys.executable, str(EXAMPLE), "--bootstrap", kafka_bootstrap, "--registry", registry_url]
        command += [
            "--topic",
            topics.verdicts,
            "--group",
            group,
            "--max",
            "3",
            "--idle-timeout",
            "30",
            *extra,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and not done.stderr, done.stderr
        return done.stdout.splitlines()

    lines = reader(f"{topics.group}-reader")
    decisions = {line.split()[0]: line.split()[1] for line in lines}
    assert decisions == {
        uploads[0].upload_id: "ALLOW",
        uploads[1].upload_id: "REVIEW",
        uploads[2].upload_id: "BLOCK",
    }
    assert all("text:" in line for line in lines if " ALLOW " not in line)  # the reasons
    pinned = reader(
        f"{topics.group}-pinned",
        "--reader-schema",
        str(default_schema_dir() / "history/ModerationVerdict.v1.avsc"),
    )
    assert sorted(pinned) == sorted(lines)
