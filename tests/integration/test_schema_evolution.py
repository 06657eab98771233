"""Schema evolution on a real registry (Apicurio 3.0.9): producers on a newer UploadEvent, records of
the previous verdict version, readers pinned to it, and an incompatible change refused by
``schemas check`` and by the registry itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from consumer.cli import schemas as schemas_admin
from consumer.config import Settings
from consumer.core.records import MediaType, ModerationVerdict
from consumer.errors import SerializationError
from consumer.schema_registry import codec_for, registry_client
from consumer.serde import AvroCodec, Codec, decode_blocking, default_schema_dir
from consumer.wiring import assembled, provider_client
from moderation_devtools.broker import free_port
from moderation_devtools.stack import (
    SimulatorProcess,
    consumer_env,
    produce_uploads,
    read_verdicts,
    upload,
)

from .conftest import ReadTopic, Topics, newer_upload_event

pytestmark = pytest.mark.integration
HISTORY = default_schema_dir() / "history"


@pytest.fixture
def registered(
    topics: Topics, registry_url: str, settings_for: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings whose subjects were set up by ``schemas register`` (auto-registration off, as in
    production); ``make(**registry)`` adds schema_registry settings."""

    def make(**registry: Any) -> Settings:
        settings = settings_for(topics, schema_registry={"url": registry_url, **registry})
        lines: list[str] = []
        assert schemas_admin.register(settings, echo=lines.append) == 0, lines
        return settings

    return make


async def test_without_registered_schemas_the_service_stops_before_consuming_and_names_the_fix(
    kafka_bootstrap: str,
    topics: Topics,
    registry_url: str,
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(topics, schema_registry={"url": registry_url})  # auto_register off
    produce_uploads(kafka_bootstrap, topics.input, [upload(MediaType.TEXT, text="hello")])
    started = False
    async with provider_client(settings) as http:
        with pytest.raises(SerializationError, match=f"subject {topics.verdicts}-value.*schemas register"):
            async with asyncio.timeout(60), assembled(settings, http, asyncio.Event()):
                started = True
    assert not started, "nothing may start before the output schemas are there"


async def verdicts_of(
    running_service: Callable[..., Any], settings: Settings, codec: Codec, ids: set[str]
) -> list[ModerationVerdict]:
    """Run the service until each of ``ids`` has a verdict; those verdicts."""
    async with running_service(settings):
        return await asyncio.to_thread(
            read_verdicts, settings.kafka.bootstrap_servers, settings.kafka.verdict_topic, ids, codec=codec
        )


async def test_a_producer_on_a_newer_upload_event_is_read_by_the_current_consumer(
    kafka_bootstrap: str,
    topics: Topics,
    registered: Callable[..., Settings],
    running_service: Callable[..., Any],
    stack: contextlib.ExitStack,
) -> None:
    settings = registered()
    client = stack.enter_context(registry_client(settings.schema_registry))
    # the producer's release registers its version: BACKWARD (set by `schemas register`) accepts it
    serializer = AvroSerializer(
        client, Schema(json.dumps(newer_upload_event()), "AVRO"), conf={"auto.register.schemas": True}
    )
    context = SerializationContext(topics.input, MessageField.VALUE)
    uploads = [upload(MediaType.TEXT, text=f"Lovely sunset number {i}") for i in range(3)]
    raw = [
        (u.upload_id.encode(), serializer(u.to_avro() | {"client_version": "9.1"}, context)) for u in uploads
    ]
    produce_uploads(kafka_bootstrap, topics.input, [], raw=raw)
    assert client.get_versions(f"{topics.input}-value") == [1, 2]
    codec = stack.enter_context(contextlib.closing(codec_for(settings)))
    verdicts = await verdicts_of(running_service, settings, codec, {u.upload_id for u in uploads})
    assert {v.upload_id for v in verdicts} == {u.upload_id for u in uploads}
    assert all(v.decision.value == "ALLOW" for v in verdicts)


async def test_a_new_verdict_is_read_by_a_downstream_reader_pinned_to_the_previous_version(
    kafka_bootstrap: str,
    topics: Topics,
    registered: Callable[..., Settings],
    running_service: Callable[..., Any],
    stack: contextlib.ExitStack,
    read_topic: ReadTopic,
) -> None:
    settings = registered()
    uploads = [upload(MediaType.TEXT, text=f"Lovely sunset number {i}") for i in range(3)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    codec = stack.enter_context(contextlib.closing(codec_for(settings)))
    current = await verdicts_of(running_service, settings, codec, {u.upload_id for u in uploads})
    assert all(v.policy_digest for v in current)  # written with version 2
    v1 = (HISTORY / "ModerationVerdict.v1.avsc").read_text()
    client = stack.enter_context(registry_client(settings.schema_registry))
    pinned = AvroDeserializer(client, v1)
    context = SerializationContext(topics.verdicts, MessageField.VALUE)
    old_fields = {f["name"] for f in json.loads(v1)["fields"]}
    read = read_topic(topics.verdicts, 3, decode=lambda m: pinned(m.value(), context), timeout=10)
    assert len(read) == 3
    assert all(set(r) == old_fields and "policy_digest" not in r for r in read)
    assert {r["upload_id"] for r in read} == {u.upload_id for u in uploads}


def test_a_verdict_written_with_the_previous_version_is_read_by_the_current_reader(
    topics: Topics,
    registry_url: str,
    settings_for: Callable[..., Settings],
    stack: contextlib.ExitStack,
) -> None:
    settings = settings_for(topics, schema_registry={"url": registry_url})
    client: SchemaRegistryClient = stack.enter_context(registry_client(settings.schema_registry))
    subject = f"{topics.verdicts}-value"
    # an older deployment registered version 1 and wrote a verdict with it
    client.set_compatibility(subject, "BACKWARD")
    v1 = Schema((HISTORY / "ModerationVerdict.v1.avsc").read_text(), "AVRO")
    old_writer = AvroSerializer(client, v1, conf={"auto.register.schemas": True})
    verdict = ModerationVerdict.from_avro(sample_verdict())  # version 1 has no policy_digest
    record = {k: v for k, v in verdict.to_avro().items() if k != "policy_digest"}
    old_bytes = old_writer(record, SerializationContext(topics.verdicts, MessageField.VALUE))
    assert old_bytes is not None
    # this release registers version 2 on top of it: compatible under BACKWARD
    lines: list[str] = []
    assert schemas_admin.register(settings, echo=lines.append) == 0, lines
    assert client.get_versions(subject) == [1, 2]
    codec = stack.enter_context(contextlib.closing(codec_for(settings)))
    read = ModerationVerdict.from_avro(
        decode_blocking(codec, old_bytes, "ModerationVerdict", topics.verdicts)
    )
    assert read == verdict and read.policy_digest is None
    # and in the single-object framing, from the history file
    local = AvroCodec()
    (v1_entry,) = [e for e in local.versions("ModerationVerdict") if "policy_digest" not in e.canonical]
    framed = local.encode("ModerationVerdict", record, version=v1_entry)
    assert ModerationVerdict.from_avro(local.decode(framed, "ModerationVerdict")) == verdict


def sample_verdict() -> dict[str, Any]:
    return {
        "verdict_id": "v-1",
        "upload_id": "u-1",
        "tenant_id": "t-1",
        "decision": "ALLOW",
        "reasons": [],
        "csam": None,
        "classification": None,
        "similarity": [],
        "checks": [],
        "policy_version": "2026-11-01",
        "source_topic": "uploads",
        "source_partition": 0,
        "source_offset": 7,
        "processed_at": 1_764_000_000_000,
        "trace_id": None,
    }


def test_an_incompatible_change_is_refused_by_schemas_check_and_by_the_registry(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    registered: Callable[..., Settings],
    registry_url: str,
    tmp_path: Path,
    stack: contextlib.ExitStack,
) -> None:
    settings = registered()
    candidate = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), candidate)
    broken = json.loads((candidate / "UploadEvent.avsc").read_text())
    # a new field without a default: today's reader could not read yesterday's uploads
    broken["fields"].append({"name": "region", "type": "string"})
    (candidate / "UploadEvent.avsc").write_text(json.dumps(broken))

    env = consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_SCHEMA_REGISTRY__URL=registry_url,
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "consumer", "schemas", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    shipped = cli("check")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert shipped.stdout.count("ok ") == 8  # three topics read, five written (with the shadow topic)
    refused = cli("check", "--schema-dir", str(candidate))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"refused {topics.input}-value: UploadEvent is not BACKWARD-compatible" in refused.stdout
    assert "Traceback" not in refused.stderr

    client = stack.enter_context(registry_client(settings.schema_registry))
    with pytest.raises(SchemaRegistryError) as refusal:
        client.register_schema(f"{topics.input}-value", Schema(json.dumps(broken), "AVRO"))
    assert refusal.value.http_status_code == 409
    assert client.get_versions(f"{topics.input}-value") == [1]

    unreachable = subprocess.run(
        [sys.executable, "-m", "consumer", "schemas", "check"],
        env=env | {"MODERATION_SCHEMA_REGISTRY__URL": f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unreachable.returncode == 3 and "unreachable" in unreachable.stdout, unreachable.stdout
