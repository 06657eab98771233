"""The Confluent wire format on a real registry (Apicurio 3.0.9): every topic written in it and read
back by confluent-kafka's own deserializer; both framings read; an unknown schema id is a dead
letter; a registry outage mid-stream loses nothing and dead-letters nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from consumer.config import Settings
from consumer.core.records import Decision, MediaType, UploadDeleted
from consumer.schema_registry import CONFLUENT_MAGIC, codec_for, registry_client
from consumer.serde import AvroCodec
from moderation_devtools.registry import LocalRegistry
from moderation_devtools.samples import image_bytes, make_image, reencoded
from moderation_devtools.stack import (
    SimulatorProcess,
    produce_uploads,
    read_dead_letters,
    read_verdicts,
    upload,
    wait_until,
)

from .conftest import ReadTopic, Topics, newer_upload_event

pytestmark = pytest.mark.integration
POLL_S = 0.05


def registry_settings(
    settings_for: Callable[..., Settings], topics: Topics, registry_url: str, **registry: Any
) -> Settings:
    return settings_for(topics, schema_registry={"url": registry_url, "auto_register": True, **registry})


def confluent_records(read_topic: ReadTopic, topic: str, url: str, count: int) -> list[dict[str, Any]]:
    """``count`` records of ``topic`` read with confluent-kafka's AvroDeserializer alone."""
    with registry_client(Settings().schema_registry.model_copy(update={"url": url})) as client:
        deserializer = AvroDeserializer(client)

        def decode(msg: Message) -> dict[str, Any]:
            value = msg.value()
            assert value is not None and value[0] == CONFLUENT_MAGIC, f"{topic}: not Confluent-framed"
            return deserializer(value, SerializationContext(topic, MessageField.VALUE))

        return read_topic(topic, count, decode=decode)


async def test_every_topic_is_written_in_the_confluent_format_and_both_framings_are_read(
    kafka_bootstrap: str,
    topics: Topics,
    registry_url: str,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    sim: SimulatorProcess,
    stack: contextlib.ExitStack,
    read_topic: ReadTopic,
) -> None:
    settings = registry_settings(settings_for, topics, registry_url)
    codec = stack.enter_context(contextlib.closing(codec_for(settings)))
    listed = make_image(302)
    sim.add_csam_image(image_bytes(listed))
    allowed = upload(MediaType.IMAGE, data=image_bytes(make_image(301)))
    spam = upload(MediaType.TEXT, text="Buy now!!! free money, click here")
    escalated = upload(MediaType.IMAGE, data=reencoded(listed), content_type="image/jpeg")
    legacy = upload(MediaType.TEXT, text="Lovely sunset at the beach today!")  # single-object framing
    produce_uploads(kafka_bootstrap, topics.input, [allowed, spam, escalated], codec=codec)
    produce_uploads(kafka_bootstrap, topics.input, [legacy], raw=[(b"poison", b"\x00\x00")])
    deletion = UploadDeleted(allowed.upload_id, allowed.tenant_id, int(time.time() * 1000), reason="user")
    produce_uploads(
        kafka_bootstrap,
        topics.deleted,
        [],
        raw=[(b"d", codec.encode("UploadDeleted", deletion.to_avro(), topic=topics.deleted))],
    )
    ids = {u.upload_id for u in (allowed, spam, escalated, legacy)}
    async with running_service(settings):
        verdicts = await asyncio.to_thread(read_verdicts, kafka_bootstrap, topics.verdicts, ids, codec=codec)
    assert {v.upload_id for v in verdicts} == ids  # both framings were read
    url = registry_url
    by_id = {r["upload_id"]: r for r in confluent_records(read_topic, topics.verdicts, url, 4)}
    assert by_id[allowed.upload_id]["decision"] == Decision.ALLOW.value
    assert by_id[legacy.upload_id]["decision"] == Decision.ALLOW.value
    (review,) = confluent_records(read_topic, topics.review, url, 1)
    assert review["upload_id"] == spam.upload_id and review["decision"] == Decision.REVIEW.value
    (escalation,) = confluent_records(read_topic, topics.escalations, url, 1)
    assert escalation["upload_id"] == escalated.upload_id
    (letter,) = confluent_records(read_topic, topics.dlq, url, 1)  # only the poison: the deletion was read
    assert letter["original_key"] == b"poison" and "Confluent" in letter["error_message"]


async def test_a_record_of_a_schema_id_the_registry_does_not_know_is_a_dead_letter(
    kafka_bootstrap: str,
    topics: Topics,
    registry_url: str,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    stack: contextlib.ExitStack,
) -> None:
    settings = registry_settings(settings_for, topics, registry_url)
    codec = stack.enter_context(contextlib.closing(codec_for(settings)))
    good = upload(MediaType.TEXT, text="Lovely sunset at the beach today!")
    body = AvroCodec().encode("UploadEvent", good.to_avro())[10:]  # a valid Avro body
    unknown = bytes([CONFLUENT_MAGIC]) + (987_654).to_bytes(4, "big") + body
    produce_uploads(kafka_bootstrap, topics.input, [], raw=[(b"unknown-id", unknown)])
    async with running_service(settings):
        letters = await asyncio.to_thread(read_dead_letters, kafka_bootstrap, topics.dlq, 1, codec=codec)
    ((letter, _),) = letters
    assert letter.original_value == unknown
    assert "schema id 987654 is unknown to the schema registry" in letter.failure.message


async def test_a_registry_outage_mid_stream_loses_nothing_and_dead_letters_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    registry: LocalRegistry,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    stack: contextlib.ExitStack,
) -> None:
    settings = registry_settings(settings_for, topics, registry.url, timeout_s=1, retry_max_delay_s=1)
    client = stack.enter_context(registry_client(settings.schema_registry))
    codec = stack.enter_context(contextlib.closing(codec_for(settings)))
    # a newer UploadEvent (one more optional field), which the running service has never seen
    serializer = AvroSerializer(
        client, Schema(json.dumps(newer_upload_event()), "AVRO"), conf={"auto.register.schemas": True}
    )
    uploads = [upload(MediaType.TEXT, text=f"Lovely sunset number {i}") for i in range(20)]
    context = SerializationContext(topics.input, MessageField.VALUE)
    raw = [
        (u.upload_id.encode(), serializer(u.to_avro() | {"client_version": "9.1"}, context)) for u in uploads
    ]
    async with running_service(settings) as service:
        # the output schemas are learnt before the first assignment: freeze only after it
        assert await asyncio.to_thread(wait_until, lambda: service.progress.assigned > 0, 60, POLL_S)
        registry.freeze()
        try:
            produce_uploads(kafka_bootstrap, topics.input, [], raw=raw)
            held = await asyncio.to_thread(wait_until, lambda: service.progress.intake_held, 60, POLL_S)
            assert held, "intake was not held while the registry was down"
            assert service.processed == 0
        finally:
            registry.thaw()
        verdicts = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, codec=codec
        )
        assert await asyncio.to_thread(wait_until, lambda: not service.progress.intake_held, 30, POLL_S)
    assert {v.upload_id for v in verdicts} == {u.upload_id for u in uploads}
    assert read_dead_letters(kafka_bootstrap, topics.dlq, 1, timeout=2, codec=codec) == []
