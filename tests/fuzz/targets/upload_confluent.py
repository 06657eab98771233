"""Uploads in Confluent framing (magic byte 0, 4-byte schema id, Avro body), decoded by the
registry codec with every shipped ``UploadEvent`` version learnt under an id of its own, the way
``prepare``/``resolve`` leave it, and another record's schema (``ReviewDecision``) under one more.
The registry itself is never reached: the first input byte picks a learnt id, the rest is the body.
Documented errors: ``SerializationError`` (with ``InvalidRecordError``).

Written against today's ``RegistryCodec._learn``; a writer-schema allow-list may change how ids
are learnt."""

from __future__ import annotations

import json

from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.errors import SerializationError
from consumer.schema_registry import RegistryCodec
from consumer.serde import AvroCodec
from tests.fuzz.targets.upload_single import accept

__all__ = ["CODEC", "SCHEMA_IDS", "WRITERS", "frame", "test_one_input"]

_LOCAL = AvroCodec()
# never reached: only ids learnt below are decoded, and an id not learnt is skipped
CODEC = RegistryCodec(SchemaRegistryClient({"url": "http://127.0.0.1:9"}), _LOCAL)
WRITERS = [
    *sorted((e for e in _LOCAL.versions("UploadEvent")), key=lambda e: e.canonical),
    _LOCAL.schema("ReviewDecision"),
]
SCHEMA_IDS = [101 + i for i in range(len(WRITERS))]
for _id, _entry in zip(SCHEMA_IDS, WRITERS, strict=True):
    CODEC._learn(_id, json.dumps(_entry.raw))


def frame(selector: int, body: bytes) -> bytes:
    """The record whose schema id is the ``selector``-th learnt one."""
    return b"\x00" + SCHEMA_IDS[selector % len(SCHEMA_IDS)].to_bytes(4, "big") + body


def test_one_input(data: bytes) -> None:
    if not data:
        return
    value = frame(data[0], data[1:])
    if CODEC.needs_registry(value):  # asks the registry: not for an offline fuzzer
        return
    try:
        record = CODEC.decode(value, "UploadEvent", topic="uploads")
    except SerializationError:
        return
    accept(record)
