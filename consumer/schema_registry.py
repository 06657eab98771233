"""The Confluent wire format (magic byte 0, 4-byte schema id, Avro binary) through the ecosystem's
own client, ``confluent_kafka.schema_registry``: ``AvroSerializer`` for what we write,
``AvroDeserializer`` for what we read, against any Confluent-compatible registry (Confluent Schema
Registry, Apicurio's ``/apis/ccompat/v7``, Karapace).

Readers accept both framings (this one and single-object encoding, ``serde.AvroCodec``), so a
deployment can switch its writers without a gap. The registry is asked only off the event loop:
``prepare`` learns every output subject's schema id at start, and a record whose schema id this
process has not seen yet is decoded through ``resolve`` in a worker thread, retried while the
registry is unreachable (``RegistryUnavailable``, transient) and dead-lettered when the registry
does not know the id (``SerializationError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.common._httpx_compat import httpx as _client_http
from confluent_kafka.serialization import MessageField, SerializationContext
from confluent_kafka.serialization import SerializationError as ClientSerializationError
from fastavro.schema import to_parsing_canonical_form

from consumer.config import KafkaSettings, SchemaRegistrySettings, Settings
from consumer.errors import ConfigError, RegistryUnavailable, SerializationError
from consumer.serde import SINGLE_OBJECT_MAGIC, AvroCodec, Codec, SchemaEntry

__all__ = [
    "CONFLUENT_MAGIC",
    "UNREACHABLE",
    "RegistryCodec",
    "codec_for",
    "output_schemas",
    "prepare_outputs",
    "registry_client",
    "subject_for",
]

CONFLUENT_MAGIC = 0
# the transport failures of the HTTP library the registry client runs on (httpx2 where installed,
# else httpx: the client's own choice, read from where it makes it)
UNREACHABLE: tuple[type[Exception], ...] = (_client_http.TransportError, OSError)
_REGISTRY_FAILURES: tuple[type[Exception], ...] = (SchemaRegistryError, *UNREACHABLE)
log = logging.getLogger("consumer.schema_registry")
_NOT_FOUND = 404


def codec_for(settings: Settings) -> Codec:
    """The codec the settings ask for: single-object encoding alone without a registry URL; with
    one, both framings read and ``serialization.format`` written (Confluent by default)."""
    local = AvroCodec()
    registry = settings.schema_registry
    writes = settings.serialization.format or ("confluent" if registry.url else "single_object")
    if registry.url is None:
        if writes == "confluent":
            raise ConfigError("serialization.format", "confluent needs schema_registry.url")
        return local
    return RegistryCodec(
        registry_client(registry),
        local,
        auto_register=registry.auto_register,
        strategy=registry.subject_name_strategy,
        write_confluent=writes == "confluent",
    )


def output_schemas(kafka: KafkaSettings, *, shadow: bool = True) -> dict[str, str]:
    """What the service writes: topic -> record name (``shadow``: with a shadow policy's topic)."""
    verdicts = (kafka.verdict_topic, kafka.review_topic, kafka.escalation_topic)
    found = {**{topic: "ModerationVerdict" for topic in verdicts}, kafka.dlq_topic: "DeadLetter"}
    if shadow:
        found[kafka.shadow_topic] = "ShadowDecision"
    return found


async def prepare_outputs(
    codec: Codec, outputs: Mapping[str, str], stop: asyncio.Event, max_delay_s: float
) -> None:
    """``codec.prepare(outputs)`` in a thread, retried with backoff while the registry is
    unreachable (the service does not take records meanwhile) until it answers or ``stop`` is set."""
    delay = 0.5
    while not stop.is_set():
        try:
            await asyncio.to_thread(codec.prepare, outputs)
            return
        except RegistryUnavailable as exc:
            log.warning("%s; retrying in %.1fs before consuming", exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_delay_s)


def registry_client(settings: SchemaRegistrySettings) -> SchemaRegistryClient:
    """A client for ``schema_registry`` settings: URL, basic or bearer credentials, timeouts. The
    client's own retries are off: ours are bounded and hold intake instead of blocking a thread."""
    conf: dict[str, Any] = {
        "url": settings.url,
        "timeout": settings.timeout_s,
        "max.retries": 0,
        "cache.capacity": 1000,
    }
    if settings.basic_auth_user_info is not None:
        conf["basic.auth.credentials.source"] = "USER_INFO"
        conf["basic.auth.user.info"] = settings.basic_auth_user_info.get_secret_value()
    if settings.bearer_token is not None:
        conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        conf["bearer.auth.token"] = settings.bearer_token.get_secret_value()
        conf["bearer.auth.logical.cluster"] = settings.bearer_logical_cluster
        if settings.bearer_identity_pool:
            conf["bearer.auth.identity.pool.id"] = settings.bearer_identity_pool
    return SchemaRegistryClient(conf)


def subject_for(strategy: str, topic: str, record_name: str) -> str:
    """The subject a topic's records are registered under: ``<topic>-value`` (TopicNameStrategy)
    or the record's full name (RecordNameStrategy)."""
    context = SerializationContext(topic, MessageField.VALUE)
    if strategy == "record":
        return str(record_subject_name_strategy(context, record_name))
    return str(topic_subject_name_strategy(context, record_name))


def _unavailable(what: str, exc: BaseException) -> RegistryUnavailable:
    return RegistryUnavailable(f"schema registry unreachable while {what} ({type(exc).__name__})")


class RegistryCodec:
    """Encodes records by schema name for a topic; decodes Confluent-framed and single-object
    records of the shipped schemas. ``local`` holds the shipped schemas (readers and writers)."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        local: AvroCodec,
        *,
        auto_register: bool = False,
        strategy: str = "topic",
        write_confluent: bool = True,
    ) -> None:
        """``write_confluent=False``: write single-object encoding still (reading both), the first
        step of a migration whose readers must all accept the new framing first."""
        self._client = client
        self._write_confluent = write_confluent
        self._local = local
        self._strategy = strategy
        self._auto_register = auto_register
        conf = {
            "auto.register.schemas": auto_register,
            "use.latest.version": False,
            "subject.name.strategy": (
                record_subject_name_strategy if strategy == "record" else topic_subject_name_strategy
            ),
        }
        self._serializer_conf = conf
        self._schemas: dict[str, Schema] = {}
        # one serializer per (record, topic): a serializer keeps the schema id of the last subject
        # it learnt, and each topic's subject has its own
        self._serializers: dict[tuple[str, str], AvroSerializer] = {}
        self._deserializers: dict[str, AvroDeserializer] = {}
        for name in local.names():
            schema = self._schemas[name] = Schema(json.dumps(local.raw(name)), "AVRO")
            self._deserializers[name] = AvroDeserializer(client, schema.schema_str)
        self._contexts: dict[str, SerializationContext] = {}
        self._known_ids: set[int] = set()
        self._shipped: dict[int, SchemaEntry] = {}
        self._lock = threading.Lock()

    # --- writing ---------------------------------------------------------------------------------
    def prepare(self, outputs: Mapping[str, str]) -> None:
        """Learn (or, with ``auto_register``, register) the schema id of every ``topic -> record
        name`` we write, so that ``encode`` never calls the registry. Blocking: run it in a thread.
        ``RegistryUnavailable`` when the registry cannot be reached; ``SerializationError`` when it
        answers that a subject lacks the shipped schema (``schemas register`` was not run)."""
        for topic, name in outputs.items():
            subject = subject_for(self._strategy, topic, self._local.full_name(name))
            schema = self._schemas[name]
            try:  # the client caches the answer: the serializer's own lookup of it is answered here
                if self._auto_register:
                    registered = self._client.register_schema_full_response(subject, schema)
                else:
                    registered = self._client.lookup_schema(subject, schema)
            except SchemaRegistryError as exc:
                if exc.http_status_code >= 500:
                    raise _unavailable(f"looking up {subject}", exc) from None
                raise SerializationError(
                    f"the registry has no {name} schema like the shipped one under subject {subject} "
                    f"(HTTP {exc.http_status_code}, {exc.error_code}); run `moderation-consumer schemas "
                    "register` or set schema_registry.auto_register"
                ) from None
            except UNREACHABLE as exc:
                raise _unavailable(f"looking up {subject}", exc) from None
            if registered.schema_id is not None:
                self._learn(registered.schema_id, schema.schema_str)

    def _learn(self, schema_id: int, schema_str: str | None) -> None:
        """Remember a schema id as resolved; when its schema is one of ours (any published
        version), its records' bodies are read as ``AvroCodec`` reads them (see ``decode``)."""
        try:
            entry = self._local.writer_of(to_parsing_canonical_form(json.loads(schema_str or "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            entry = None  # not JSON Avro we can read: the library's deserializer keeps reading it
        with self._lock:
            if entry is not None:
                self._shipped[schema_id] = entry
            self._known_ids.add(schema_id)

    def _context(self, topic: str) -> SerializationContext:
        context = self._contexts.get(topic)
        if context is None:
            context = self._contexts[topic] = SerializationContext(topic, MessageField.VALUE)
        return context

    def _serializer(self, name: str, topic: str) -> Any:  # an AvroSerializer (the package is untyped)
        schema = self._schemas.get(name)
        if schema is None:
            raise SerializationError(f"unknown schema {name!r}")
        serializer = AvroSerializer(self._client, schema, conf=dict(self._serializer_conf))
        self._serializers[(name, topic)] = serializer
        return serializer

    def encode(self, name: str, record: dict[str, Any], *, topic: str = "") -> bytes:
        if not self._write_confluent:
            return self._local.encode(name, record)
        serializer = self._serializers.get((name, topic)) or self._serializer(name, topic)
        try:
            data = serializer(record, self._context(topic))
        except (ValueError, TypeError, AttributeError, ClientSerializationError) as exc:
            raise SerializationError(f"cannot encode {name}: {exc}") from None
        except _REGISTRY_FAILURES as exc:  # only before ``prepare``
            raise _unavailable(f"encoding {name} for {topic}", exc) from None
        assert data is not None
        return data

    # --- reading ---------------------------------------------------------------------------------
    def schema_id(self, data: bytes | None) -> int | None:
        """The schema id of a Confluent-framed record, None for any other bytes."""
        if data is None or len(data) < 6 or data[0] != CONFLUENT_MAGIC:
            return None
        return int.from_bytes(data[1:5], "big")

    def needs_registry(self, data: bytes | None) -> bool:
        """True when decoding ``data`` would ask the registry (an id this process has not seen):
        decode it with ``resolve`` in a worker thread, never on the event loop."""
        schema_id = self.schema_id(data)
        return schema_id is not None and schema_id not in self._known_ids

    def resolve(self, data: bytes, expected: str, *, topic: str) -> dict[str, Any]:
        """``decode`` for a record whose schema id is new here: asks the registry (blocking)."""
        schema_id = self.schema_id(data)
        if schema_id is None:
            raise SerializationError("not a Confluent-framed record (magic byte 0 + schema id)")
        try:
            value = self._deserialize(data, expected, topic)
            writer = self._client.get_schema(schema_id).schema_str  # cached by the deserializer's lookup
        except SchemaRegistryError as exc:
            if exc.http_status_code == _NOT_FOUND:
                raise SerializationError(f"schema id {schema_id} is unknown to the schema registry") from None
            if exc.http_status_code >= 500:
                raise _unavailable(f"reading schema id {schema_id}", exc) from None
            raise SerializationError(
                f"the schema registry refused schema id {schema_id} (HTTP {exc.http_status_code})"
            ) from None
        except UNREACHABLE as exc:
            raise _unavailable(f"reading schema id {schema_id}", exc) from None
        self._learn(schema_id, writer)
        return value

    def decode(self, data: bytes | None, expected: str, *, topic: str = "") -> dict[str, Any]:
        """A record of schema ``expected``, from either framing. A Confluent-framed record of an id
        not seen yet must go through ``resolve`` (``needs_registry``) first."""
        if not data:
            raise SerializationError("empty value (null or zero bytes)")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._local.decode(data, expected)
        schema_id = self.schema_id(data)
        if schema_id is None:
            raise SerializationError(
                "neither Confluent framing (magic byte 0 + schema id) nor Avro single-object encoding "
                f"(first bytes {data[:4].hex()})"
            )
        shipped = self._shipped.get(schema_id)
        if shipped is not None:
            # One of our schemas wrote it: the body is read by fastavro with that parsed schema,
            # as AvroDeserializer would, without its per-record expansion of the reader schema
            # (for data-contract rules, which run only with a context: 11 of its 17 us a record).
            return self._local.read_body(data, 5, shipped, expected)
        if schema_id not in self._known_ids:
            raise SerializationError(f"schema id {schema_id} not resolved yet (call resolve off the loop)")
        return self._deserialize(data, expected, topic)

    def _deserialize(self, data: bytes, expected: str, topic: str) -> dict[str, Any]:
        deserializer = self._deserializers.get(expected)
        if deserializer is None:
            raise SerializationError(f"unknown schema {expected!r}")
        try:
            value = deserializer(data, None)
        except _REGISTRY_FAILURES:
            raise
        except Exception as exc:  # fastavro and the client raise many kinds for a body that breaks its schema
            raise SerializationError(f"corrupt {expected} body: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict):
            raise SerializationError(f"{expected} did not decode to a record")
        return value

    def known_ids(self) -> Iterable[int]:
        return tuple(self._known_ids)

    def close(self) -> None:
        """Close the registry client's HTTP connections."""
        self._client.close()
