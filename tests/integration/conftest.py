"""The real parts: one Kafka broker per test session, the simulator, per-test topics, the service."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from consumer.config import Settings, load_settings
from consumer.kafka import ensure_topics
from consumer.wiring import Assembled, assembled, provider_client
from moderation_devtools.broker import LocalKafka
from moderation_devtools.registry import LocalRegistry
from moderation_devtools.stack import SimulatorProcess, iter_messages
from moderation_simulator.state import DEFAULT_HUAWEI_TOKEN, DEFAULT_KEYS


def _docker_kafka() -> Any | None:
    """A testcontainers Kafka when a Docker engine answers; None otherwise."""
    from docker.errors import DockerException
    from testcontainers.community.kafka import KafkaContainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return KafkaContainer("apache/kafka:4.1.1")
        except DockerException:
            return None
        finally:
            gc.collect()  # the failed probe leaves a socket to collect while warnings are ignored


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` if set, else a testcontainers Kafka, else the local broker."""
    if env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield env
        return
    container = _docker_kafka()
    if container is not None:
        with container as kafka:
            yield kafka.get_bootstrap_server()
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """One Apicurio Registry 3.0.9 for the session (from Maven Central, in-memory storage)."""
    local = LocalRegistry(tmp_path_factory.mktemp("registry"))
    local.start()
    try:
        yield local
    finally:
        local.thaw()
        local.stop()


@pytest.fixture
def registry_url(registry: LocalRegistry) -> str:
    """The session registry's Confluent-compatible URL (subjects are per-test topics)."""
    return registry.url


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    sim = SimulatorProcess(log_path=tmp_path_factory.mktemp("sim") / "simulator.log", hostile_port=0).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(simulator: SimulatorProcess) -> SimulatorProcess:
    """The session simulator, reset for this test."""
    simulator.reset()
    simulator.admin("/_admin/latency", json={"median_ms": 0, "p99_ms": 0})
    return simulator


@dataclass(frozen=True)
class Topics:
    input: str
    verdicts: str
    review: str
    escalations: str
    dlq: str
    deleted: str
    decisions: str
    callbacks: str
    shadow: str
    group: str

    def env(self) -> dict[str, str]:
        return {
            "input_topic": self.input,
            "verdict_topic": self.verdicts,
            "review_topic": self.review,
            "escalation_topic": self.escalations,
            "dlq_topic": self.dlq,
            "deleted_topic": self.deleted,
            "review_decision_topic": self.decisions,
            "callback_topic": self.callbacks,
            "shadow_topic": self.shadow,
        }


@pytest.fixture
def make_topics(kafka_bootstrap: str) -> Callable[..., Topics]:
    """make_topics(input_partitions=4, other_partitions=4): fresh topic names and a fresh group."""

    def make(input_partitions: int = 4, other_partitions: int = 4) -> Topics:
        suffix = uuid.uuid4().hex[:8]
        names = (
            *("uploads", "verdicts", "review", "escalations", "dlq"),
            *("deleted", "decisions", "callbacks", "shadow"),
        )
        t = Topics(*(f"{n}-{suffix}" for n in names), group=f"group-{suffix}")
        settings = load_settings(kafka={"bootstrap_servers": kafka_bootstrap})
        ensure_topics(settings.kafka, [t.input], partitions=input_partitions)
        ensure_topics(
            settings.kafka, [v for k, v in t.env().items() if k != "input_topic"], partitions=other_partitions
        )
        return t

    return make


@pytest.fixture
def topics(make_topics: Callable[..., Topics]) -> Topics:
    """Fresh topics of 4 partitions each and a fresh group for one test."""
    return make_topics()


ReadTopic = Callable[..., list[Any]]


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> ReadTopic:
    """``read_topic(topic, count=None, *, decode=None, until=None, timeout=30, isolation=...)``:
    records of ``topic`` from its beginning (each passed through ``decode(message)`` if given),
    until ``count`` are read, ``until(records so far)`` holds, or ``timeout`` seconds pass (with
    neither given: everything written within the timeout). The reading consumer is closed on return."""

    def read(
        topic: str,
        count: int | None = None,
        *,
        decode: Callable[[Message], Any] | None = None,
        until: Callable[[list[Any]], bool] | None = None,
        timeout: float = 30.0,
        isolation: str = "read_committed",
    ) -> list[Any]:
        found: list[Any] = []
        messages = iter_messages(kafka_bootstrap, topic, timeout=timeout, isolation=isolation)
        with contextlib.closing(messages):
            for msg in messages:
                found.append(msg if decode is None else decode(msg))
                if (count is not None and len(found) >= count) or (until is not None and until(found)):
                    break
        return found

    return read


@pytest.fixture
def settings_for(kafka_bootstrap: str, sim: SimulatorProcess) -> Callable[..., Settings]:
    def make(
        t: Topics,
        callbacks: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        media: dict[str, Any] | None = None,
        schema_registry: dict[str, Any] | None = None,
        **processing: Any,
    ) -> Settings:
        """Settings against the broker and the simulator (Hive keys and a Huawei library both set);
        ``schema_registry``: e.g. ``{"url": registry_url, "auto_register": True}``."""
        return load_settings(
            schema_registry=schema_registry or {},
            kafka={
                "bootstrap_servers": kafka_bootstrap,
                "group_id": t.group,
                "create_topics": False,
                "commit_interval_ms": 100,
                **t.env(),
            },
            hive={
                "base_url": sim.url,
                "visual_key": DEFAULT_KEYS["visual"],
                "text_key": DEFAULT_KEYS["text"],
                "csam_key": DEFAULT_KEYS["csam"],
                "index_key": DEFAULT_KEYS["index"],
            },
            processing=processing,
            limits=limits or {},
            huawei={
                "base_url": sim.url,
                "token": DEFAULT_HUAWEI_TOKEN,
                "project_id": "proj",
                "instance": "moderation",
            },
            callbacks={
                "host": "127.0.0.1",
                "port": 0,
                "token": "test-callback-token",
                "poll_after_s": 30,
                "poll_interval_s": 1,
                "deadline_s": 60,
                **(callbacks or {}),
            },
            health={"host": "127.0.0.1", "port": 0},
            media={"allow_networks": ["127.0.0.1/32"], **(media or {})},
        )

    return make


@pytest.fixture
def running_service() -> Callable[[Settings], Any]:
    """``async with running_service(settings, **options) as service:`` runs the real service in this
    loop, assembled as ``run`` assembles it (``options``: ``wiring.assembled`` keywords, such as a
    check registry)."""

    @asynccontextmanager
    async def run(settings: Settings, **options: Any) -> AsyncIterator[Assembled]:
        stop = asyncio.Event()
        async with provider_client(settings) as http, assembled(settings, http, stop, **options) as process:
            task = asyncio.create_task(process.run(stop))
            try:
                yield process
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)

    return run


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Closes what a test opens (registry clients, codecs)."""
    with contextlib.ExitStack() as opened:
        yield opened


def newer_upload_event() -> dict[str, Any]:
    """UploadEvent with one more optional field, as a producer a release ahead of us would write."""
    from consumer.serde import AvroCodec

    newer = dict(AvroCodec().raw("UploadEvent"))
    newer["fields"] = [
        *newer["fields"],
        {"name": "client_version", "type": ["null", "string"], "default": None},
    ]
    return newer


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
