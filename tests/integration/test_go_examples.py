"""``examples/go/``: a producer and a verdict reader on franz-go (with its ``pkg/sr``) and
hamba/avro, built with ``go build`` and run against the test broker and Apicurio. The Go
producer's uploads (text, inline images, an image by URL, one that breaks the contract) get their
verdicts and dead letter from the real service, and the Go reader prints every record the Python
reader prints, from all four outputs: neither shows a record of an aborted transaction, and each
prints a verdict written twice once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer import schema_admin
from consumer.config import Settings
from consumer.schema_admin import Outcome
from consumer.schema_registry import codec_for
from consumer.serde import decode_blocking
from moderation_devtools.broker import cache_dir
from moderation_devtools.samples import image_bytes, make_image, reencoded
from moderation_devtools.stack import SimulatorProcess, iter_messages, read_dead_letters, read_verdicts

from .conftest import Topics
from .examples import in_transaction, own_lines

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "examples" / "go"
SCHEMA = ROOT / "schemas" / "UploadEvent.avsc"
PYTHON_READER = ROOT / "examples" / "verdict_reader.py"


def go_binary() -> str | None:
    return shutil.which("go") or next((str(p) for p in (Path("/usr/local/go/bin/go"),) if p.exists()), None)


def go_env() -> dict[str, str]:
    """The module cache `make go-examples` fills (``go mod download``); go.sum pins every module."""
    return {
        **os.environ,
        "GOMODCACHE": str(cache_dir() / "go" / "mod"),
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }


@pytest.fixture(scope="module")
def go_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two commands, built into a temporary directory."""
    go = go_binary()
    if go is None:
        if os.environ.get("CI"):
            pytest.fail("Go is not installed: CI must build and run examples/go")
        pytest.skip("Go is not installed (not on PATH nor in /usr/local/go): examples/go cannot be built")
    out = tmp_path_factory.mktemp("go-bin")
    command = [go, "build", "-o", str(out) + "/", "./producer", "./verdictreader"]
    done = subprocess.run(command, cwd=MODULE, env=go_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


def run(command: list[str]) -> list[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and not own_lines(done.stderr), done.stderr
    return done.stdout.splitlines()


async def test_go_producer_and_reader_against_the_service(
    go_examples: Path,
    kafka_bootstrap: str,
    topics: Topics,
    registry_url: str,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    tmp_path: Path,
) -> None:
    settings = settings_for(topics, schema_registry={"url": registry_url})  # auto_register off
    assert all(r.outcome is Outcome.OK for r in schema_admin.register(settings))
    benign = tmp_path / "benign.png"
    benign.write_bytes(image_bytes(make_image(41)))
    listed = make_image(42)
    sim.add_csam_image(image_bytes(listed))
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(reencoded(listed))
    url = sim.host_media("hosted.jpg", image_bytes(make_image(43), "JPEG"), "image/jpeg")

    producer = [str(go_examples / "producer"), "-bootstrap", kafka_bootstrap, "-registry", registry_url]
    producer += ["-topic", topics.input, "-schema", str(SCHEMA)]
    written = run(
        [
            *producer,
            "text:Lovely sunset at the beach today!",
            "text:Buy now!!! free money, click here",
            "text:I am going to kill you tomorrow",
            f"file:{benign}",
            f"file:{copy}",
            f"url:{url}",
        ]
    )
    ids = [line.split()[0] for line in written]
    assert [line.split()[2] for line in written] == ["text", "text", "text", "inline", "inline", "url"]
    [bad] = [line.split()[0] for line in run([*producer, "-tenant", "not a tenant", "text:hello"])]

    with contextlib.closing(codec_for(settings)) as codec:
        async with running_service(settings):
            verdicts = await asyncio.to_thread(
                read_verdicts, kafka_bootstrap, topics.verdicts, set(ids), codec=codec
            )
            letters = await asyncio.to_thread(read_dead_letters, kafka_bootstrap, topics.dlq, 1, codec=codec)
        # a verdict written twice (at_least_once after a crash) and one of an aborted transaction:
        # neither reader may show either twice or at all
        first = next(iter_messages(kafka_bootstrap, topics.verdicts, timeout=30))
        verdict = decode_blocking(codec, first.value(), "ModerationVerdict", topics.verdicts)
        ghost = {**verdict, "upload_id": "aborted-upload", "verdict_id": "aborted-verdict"}
        ghost_bytes = codec.encode("ModerationVerdict", ghost, topic=topics.verdicts)
        in_transaction(
            kafka_bootstrap,
            topics.verdicts,
            [(first.key(), first.value() or b"")],
            abort=False,
            name="go-example",
        )
        in_transaction(
            kafka_bootstrap,
            topics.verdicts,
            [(b"aborted-upload", ghost_bytes)],
            abort=True,
            name="go-example",
        )
    decisions = {v.upload_id: v.decision.value for v in verdicts}
    assert [decisions.get(i) for i in ids] == ["ALLOW", "REVIEW", "BLOCK", "ALLOW", "ESCALATE", "ALLOW"]
    assert [letter.upload_id for letter, _ in letters] == [bad]

    outputs = [topics.verdicts, topics.review, topics.escalations, topics.dlq]
    python_lines = run(
        [
            sys.executable,
            str(PYTHON_READER),
            "--bootstrap",
            kafka_bootstrap,
            "--registry",
            registry_url,
            "--group",
            f"{topics.group}-python",
            "--idle-timeout",
            "15",
            *(arg for topic in outputs for arg in ("--topic", topic)),
        ]
    )
    go_lines = run(
        [
            str(go_examples / "verdictreader"),
            "-bootstrap",
            kafka_bootstrap,
            "-registry",
            registry_url,
            "-group",
            f"{topics.group}-go",
            "-topics",
            ",".join(outputs),
            "-idle-timeout",
            "15s",
        ]
    )
    # six verdicts, their review and escalation copies, one dead letter; no duplicate, no ghost
    assert len(python_lines) == 9 and not any("aborted-upload" in line for line in python_lines)
    assert Counter(go_lines) == Counter(python_lines)
    assert Counter(line.split()[1] for line in go_lines) == {
        "ALLOW": 3,
        "REVIEW": 2,
        "BLOCK": 1,
        "ESCALATE": 2,
        "DEAD": 1,
    }
