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

A schema id is chosen by whoever wrote the record, and a schema by whoever registered it, so a
writer schema is admitted before any body written with it is decoded (``core.writer_schemas``):
one of our published schemas; or a registered version of the topic's subject (or of a subject in
``schema_registry.accepted_subjects``) that our reader schema can read and that passes the
structural checks (no recursion, no arrays of items that take no bytes, bounded size and depth).
Any other id is refused, and refused and unknown ids are remembered for
``schema_registry.refused_id_ttl_s``: a storm of records carrying one costs one lookup. Lookups of
one id are single-flight. Bodies are then read by fastavro with the admitted writer schema, as
``AvroDeserializer`` reads them (which has no hook to refuse a writer schema before decoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import fastavro
from cachetools import TTLCache
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.common._httpx_compat import httpx as _client_http
from confluent_kafka.serialization import MessageField, SerializationContext
from confluent_kafka.serialization import SerializationError as ClientSerializationError
from fastavro.schema import to_parsing_canonical_form
from pydantic import SecretStr

from consumer.config import Settings
from consumer.core.writer_schemas import (
    BodyLimits,
    check_writer_schema,
    full_name,
    parse_writer_schema,
    reader_gap,
)
from consumer.errors import ConfigError, RegistryUnavailable, SerializationError
from consumer.serde import SINGLE_OBJECT_MAGIC, AvroCodec, Codec, SchemaEntry
from consumer.settings_sections import KafkaSettings, SchemaRegistrySettings

__all__ = [
    "CONFLUENT_MAGIC",
    "UNREACHABLE",
    "RegistryCodec",
    "codec_for",
    "input_schemas",
    "live_registry_client",
    "output_schemas",
    "prepare_outputs",
    "registry_client",
    "registry_retrying",
    "subject_for",
]

CONFLUENT_MAGIC = 0
# the transport failures of the HTTP library the registry client runs on (httpx2 where installed,
# else httpx: the client's own choice, read from where it makes it)
UNREACHABLE: tuple[type[Exception], ...] = (_client_http.TransportError, OSError)
_REGISTRY_FAILURES: tuple[type[Exception], ...] = (SchemaRegistryError, *UNREACHABLE)
log = logging.getLogger("consumer.schema_registry")
_NOT_FOUND = 404
_REFUSED_IDS = 10_000  # refused or unknown schema ids remembered at once
_FIRST_DELAY_S = 0.5  # the first wait while the registry is unreachable (then doubled)
T = TypeVar("T")


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
    codec = RegistryCodec(
        live_registry_client(settings),
        local,
        auto_register=registry.auto_register,
        strategy=registry.subject_name_strategy,
        write_confluent=writes == "confluent",
        accepted_subjects=registry.accepted_subjects,
        refused_ttl_s=registry.refused_id_ttl_s,
    )
    for setting in ("schema_registry.basic_auth_user_info", "schema_registry.bearer_token"):
        secret = settings.live_secret(setting)
        if secret is not None:  # a rotated credentials file: later lookups ask with a new client
            secret.subscribe(lambda _: codec.use_client(live_registry_client(settings)))
    return codec


def live_registry_client(settings: Settings) -> SchemaRegistryClient:
    """``registry_client`` with the credentials in force now (a ``*_file`` may have replaced them
    since start: ``runtime.secrets``)."""
    registry = settings.schema_registry
    update = {}
    for field in ("basic_auth_user_info", "bearer_token"):
        secret = settings.live_secret(f"schema_registry.{field}")
        if secret is not None:
            update[field] = SecretStr(secret.current())
    return registry_client(registry.model_copy(update=update) if update else registry)


def input_schemas(kafka: KafkaSettings) -> dict[str, str]:
    """What the service reads: topic -> record name (the uploads and the index maintenance inputs)."""
    return {
        kafka.input_topic: "UploadEvent",
        kafka.deleted_topic: "UploadDeleted",
        kafka.review_decision_topic: "ReviewDecision",
    }


def output_schemas(kafka: KafkaSettings, *, shadow: bool = True) -> dict[str, str]:
    """What the service writes: topic -> record name (``shadow``: with a shadow policy's topic)."""
    verdicts = (kafka.verdict_topic, kafka.review_topic, kafka.escalation_topic)
    found = {**{topic: "ModerationVerdict" for topic in verdicts}, kafka.dlq_topic: "DeadLetter"}
    if shadow:
        found[kafka.shadow_topic] = "ShadowDecision"
    return found


async def registry_retrying(
    call: Callable[[], T],
    max_delay_s: float,
    on_unavailable: Callable[[RegistryUnavailable, float], None],
    *,
    stop: asyncio.Event | None = None,
) -> T:
    """The registry's one backoff: ``call()`` in a worker thread, tried again after 0.5 s, 1 s,
    2 s ... (at most ``max_delay_s``; 0 never waits) for as long as it raises
    ``RegistryUnavailable``, with ``on_unavailable(error, delay)`` told before each wait. There is
    no bound on tries: an unreachable registry holds intake, it does not fail records. Any other
    error is the caller's. ``stop``: a wait ends when it is set, and the last
    ``RegistryUnavailable`` is raised."""
    delay = min(_FIRST_DELAY_S, max_delay_s)
    while True:
        try:
            return await asyncio.to_thread(call)
        except RegistryUnavailable as exc:
            on_unavailable(exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    raise
        delay = min(delay * 2, max_delay_s)


async def prepare_outputs(
    codec: Codec, outputs: Mapping[str, str], stop: asyncio.Event, max_delay_s: float
) -> None:
    """``codec.prepare(outputs)`` in a thread, retried with backoff while the registry is
    unreachable (the service does not take records meanwhile) until it answers or ``stop`` is set."""

    def unavailable(exc: RegistryUnavailable, delay: float) -> None:
        log.warning("%s; retrying in %.1fs before consuming", exc, delay)

    if stop.is_set():
        return
    with contextlib.suppress(RegistryUnavailable):  # only once stopped
        await registry_retrying(lambda: codec.prepare(outputs), max_delay_s, unavailable, stop=stop)


def registry_client(settings: SchemaRegistrySettings) -> SchemaRegistryClient:
    """A client for ``schema_registry`` settings: URL, basic or bearer credentials, timeouts. The
    client's own retries are off: ours are bounded and hold intake instead of blocking a thread."""
    conf: dict[str, Any] = {
        "url": settings.url,
        "timeout": settings.timeout_s,
        "max.retries": 0,
        "cache.capacity": 1000,
    }
    if settings.basic_auth_user_info is not None:  # (this client takes no basic.auth.credentials.source)
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
        accepted_subjects: Sequence[str] = (),
        refused_ttl_s: float = 300.0,
    ) -> None:
        """``write_confluent=False``: write single-object encoding still (reading both), the first
        step of a migration whose readers must all accept the new framing first.
        ``accepted_subjects``: subjects whose registered versions are admitted as writer schemas of
        any topic, besides the topic's own subject."""
        # lookups and writer-schema reads ask ``_client`` (replaced by ``use_client`` when the
        # credentials rotate); what we write is encoded through ``_write_client``, the one ``prepare``
        # taught every output's schema id, so encoding never asks the registry, whichever is current
        self._client = client
        self._write_client = client
        self._retired: SchemaRegistryClient | None = None
        self._closed = False
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
        for name in local.names():
            self._schemas[name] = Schema(json.dumps(local.raw(name)), "AVRO")
        self._contexts: dict[str, SerializationContext] = {}
        self._accepted_subjects = tuple(accepted_subjects)
        self._writers: dict[int, SchemaEntry] = {}  # admitted writer schemas by id
        self._refused: TTLCache[int, str] = TTLCache(maxsize=_REFUSED_IDS, ttl=refused_ttl_s)
        self._resolving: dict[int, threading.Lock] = {}
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
                    registered = self._write_client.register_schema_full_response(subject, schema)
                else:
                    registered = self._write_client.lookup_schema(subject, schema)
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
        """Admit a schema id we registered or looked up for an output: one of our published schemas."""
        try:
            entry = self._local.writer_of(to_parsing_canonical_form(json.loads(schema_str or "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            entry = None
        if entry is not None:
            with self._lock:
                self._writers[schema_id] = entry

    def _context(self, topic: str) -> SerializationContext:
        context = self._contexts.get(topic)
        if context is None:
            context = self._contexts[topic] = SerializationContext(topic, MessageField.VALUE)
        return context

    def _serializer(self, name: str, topic: str) -> Any:  # an AvroSerializer (the package is untyped)
        schema = self._schemas.get(name)
        if schema is None:
            raise SerializationError(f"unknown schema {name!r}")
        serializer = AvroSerializer(self._write_client, schema, conf=dict(self._serializer_conf))
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
        """True when decoding ``data`` would ask the registry (an id this process has neither
        admitted nor refused lately): decode it with ``resolve`` in a worker thread, never on the
        event loop."""
        schema_id = self.schema_id(data)
        if schema_id is None or schema_id in self._writers:
            return False
        with self._lock:
            return schema_id not in self._refused

    def resolve(self, data: bytes, expected: str, *, topic: str) -> dict[str, Any]:
        """``decode`` for a record whose schema id is new here: asks the registry (blocking) whether
        its writer schema is admitted, once per id however many records carry it at once."""
        schema_id = self.schema_id(data)
        if schema_id is None:
            raise SerializationError("not a Confluent-framed record (magic byte 0 + schema id)")
        with self._lock:
            lock = self._resolving.setdefault(schema_id, threading.Lock())
        with lock:
            if schema_id not in self._writers and self._refusal(schema_id) is None:
                try:
                    entry = self._admit(schema_id, expected, topic)
                    with self._lock:
                        self._writers[schema_id] = entry
                except SerializationError as exc:
                    with self._lock:
                        self._refused[schema_id] = str(exc)
                    raise
                finally:  # the answer is stored before the lock is dropped: no second lookup
                    with self._lock:
                        self._resolving.pop(schema_id, None)
        return self.decode(data, expected, topic=topic)

    def _refusal(self, schema_id: int) -> str | None:
        with self._lock:
            refusal: str | None = self._refused.get(schema_id)
        return refusal

    def _admit(self, schema_id: int, expected: str, topic: str) -> SchemaEntry:
        """The writer schema of ``schema_id`` if it may be read as ``expected`` on ``topic``;
        SerializationError (remembered) if not, RegistryUnavailable (not remembered) when the
        registry cannot be asked."""
        registered = self._fetch(schema_id)
        if (registered.schema_type or "AVRO") != "AVRO" or registered.references:
            raise SerializationError(
                f"schema id {schema_id} refused: not a self-contained Avro schema"
                f" ({registered.schema_type or 'AVRO'}, {len(registered.references or [])} references)"
            )
        try:
            raw = parse_writer_schema(registered.schema_str or "")
            canonical = to_parsing_canonical_form(raw)
        except SerializationError as exc:
            raise SerializationError(f"schema id {schema_id} refused: {exc}") from None
        except Exception as exc:  # fastavro's schema errors: not a valid Avro schema
            raise SerializationError(
                f"schema id {schema_id} refused: not a valid Avro schema ({type(exc).__name__})"
            ) from None
        shipped = self._local.writer_of(canonical)
        if shipped is not None:
            return shipped
        reader = self._local.raw(expected)
        try:
            check_writer_schema(raw)
        except SerializationError as exc:
            raise SerializationError(f"schema id {schema_id} refused: {exc}") from None
        gap = reader_gap(raw, reader)
        if gap is not None:
            raise SerializationError(f"schema id {schema_id} refused: cannot be read as {expected}: {gap}")
        subjects = (
            subject_for(self._strategy, topic, self._local.full_name(expected)),
            *self._accepted_subjects,
        )
        if not any(self._registered_under(subject, registered.schema_str or "") for subject in subjects):
            raise SerializationError(
                f"schema id {schema_id} refused: not a registered version of {', '.join(subjects)}"
            )
        try:
            parsed = fastavro.parse_schema(raw)
            limits = BodyLimits(raw)
        except Exception as exc:  # fastavro's schema errors
            raise SerializationError(
                f"schema id {schema_id} refused: not a valid Avro schema ({type(exc).__name__})"
            ) from None
        name = str(raw["name"]).rsplit(".", 1)[-1]
        return SchemaEntry(
            name,
            parsed,
            canonical,
            b"",
            raw=raw,
            full_name=full_name(raw["name"], raw.get("namespace")),
            limits=limits,
        )

    def _registered_under(self, subject: str, schema_str: str) -> bool:
        try:
            self._client.lookup_schema(subject, Schema(schema_str, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == _NOT_FOUND:
                return False
            if exc.http_status_code >= 500:
                raise _unavailable(f"looking up {subject}", exc) from None
            return False
        except UNREACHABLE as exc:
            raise _unavailable(f"looking up {subject}", exc) from None
        return True

    def _fetch(self, schema_id: int) -> Any:
        """The registered schema of ``schema_id`` (the client caches it)."""
        try:
            return self._client.get_schema(schema_id)
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
        writer = self._writers.get(schema_id)
        if writer is not None:
            # read by fastavro with the admitted writer schema, as AvroDeserializer would, without
            # its per-record expansion of the reader schema (for data-contract rules we do not use)
            return self._local.read_body(data, 5, writer, expected)
        refusal = self._refusal(schema_id)
        if refusal is not None:
            raise SerializationError(refusal)
        raise SerializationError(f"schema id {schema_id} not resolved yet (call resolve off the loop)")

    def use_client(self, client: SchemaRegistryClient) -> None:
        """Ask ``client`` from now on (new credentials). The client it replaces is closed at the next
        replacement (a lookup in a worker thread may still be using it), or by ``close``."""
        with self._lock:
            if self._closed:
                stale: SchemaRegistryClient | None = client
            else:
                old, self._client = self._client, client
                stale, self._retired = self._retired, (None if old is self._write_client else old)
        if stale is not None:
            stale.close()

    def close(self) -> None:
        """Close the registry clients' HTTP connections."""
        with self._lock:
            self._closed = True
            clients = {id(c): c for c in (self._client, self._write_client, self._retired) if c is not None}
        for client in clients.values():
            client.close()
