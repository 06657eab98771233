"""``examples/upload_producer.py``, the upload producer users copy: confluent-kafka alone
(``SerializingProducer``, ``AvroSerializer`` against the registry) writes a text, an inline image
and an image by URL that the real service moderates; it registers nothing, so before
``schemas register`` it refuses to write."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer import schema_admin
from consumer.config import Settings
from consumer.core.records import Decision
from consumer.schema_admin import Outcome
from consumer.schema_registry import codec_for
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import SimulatorProcess, read_verdicts

from .conftest import Topics
from .examples import assert_stands_alone, own_lines

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "upload_producer.py"


def test_the_example_imports_nothing_of_ours() -> None:
    assert_stands_alone(EXAMPLE)


async def test_the_example_producer_writes_uploads_the_service_moderates(
    kafka_bootstrap: str,
    topics: Topics,
    registry_url: str,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    tmp_path: Path,
) -> None:
    settings = settings_for(topics, schema_registry={"url": registry_url})  # auto_register off
    image = tmp_path / "photo.png"
    image.write_bytes(image_bytes(make_image(31)))
    url = sim.host_media("photo.jpg", image_bytes(make_image(32), "JPEG"), "image/jpeg")

    def produce() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(EXAMPLE), "--bootstrap", kafka_bootstrap, "--registry", registry_url]
        command += ["--topic", topics.input, "--tenant", "demo"]
        command += ["text:Lovely sunset at the beach today!", f"file:{image}", f"url:{url}"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    refused = produce()  # nothing registered yet, and the producer registers nothing
    assert refused.returncode != 0 and not refused.stdout
    results = list(schema_admin.register(settings))
    assert all(r.outcome is Outcome.OK for r in results), results

    done = produce()
    assert done.returncode == 0 and not own_lines(done.stderr), done.stderr
    written = [line.split() for line in done.stdout.splitlines()]
    assert [(kind, how) for _, kind, how in written] == [
        ("TEXT", "text"),
        ("IMAGE", "inline"),
        ("IMAGE", "url"),
    ]
    ids = {upload_id for upload_id, _, _ in written}

    with contextlib.closing(codec_for(settings)) as codec:
        async with running_service(settings):
            verdicts = await asyncio.to_thread(
                read_verdicts, kafka_bootstrap, topics.verdicts, ids, codec=codec
            )
    found = {v.upload_id: v for v in verdicts if v.upload_id in ids}
    assert set(found) == ids
    assert all(v.decision is Decision.ALLOW for v in found.values()), found
    assert all(v.tenant_id == "demo" for v in found.values())
    by_kind = {how: found[upload_id] for upload_id, _, how in written}
    assert {c.check for c in by_kind["inline"].checks} == {"csam", "visual", "similarity"}
    assert {c.check for c in by_kind["text"].checks} == {"text"}
