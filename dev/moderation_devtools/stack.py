"""Helpers that start and drive the real parts (simulator process, consumer process, topics),
shared by the demo, the integration tests and the benchmarks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
from confluent_kafka import Consumer, Message, Producer

from consumer.core import index_metadata
from consumer.core.deadletter import DeadLetter
from consumer.core.records import MediaType, ModerationVerdict, UploadEvent
from consumer.serde import AvroCodec, Codec, decode_blocking
from moderation_devtools.broker import free_port
from moderation_simulator.state import DEFAULT_KEYS

QUIET = logging.getLogger("moderation_devtools.clients")
QUIET.setLevel(logging.ERROR)

__all__ = [
    "QUIET",
    "ConsumerProcess",
    "SimulatorProcess",
    "TopicReader",
    "VerdictCollector",
    "consumer_env",
    "iter_messages",
    "iter_verdicts",
    "json_log_lines",
    "produce_uploads",
    "read_dead_letters",
    "read_verdicts",
    "reader",
    "upload",
    "wait_until",
    "wait_until_async",
]


def _spawn(
    cmd: list[str], log_path: Path | None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its output appended to ``log_path`` (or discarded)."""
    if log_path is None:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@dataclass
class SimulatorProcess:
    """``python -m moderation_simulator`` on a free port, with its admin hooks. ``hostile_port``: also
    run the hostile server (0 = on a free port), at ``hostile_url``."""

    latency_median_ms: float = 0.0
    latency_p99_ms: float = 0.0
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    hostile_port: int | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostile_url(self) -> str:
        if self.hostile_port is None:
            raise RuntimeError("the simulator runs without a hostile server (set hostile_port)")
        return f"http://127.0.0.1:{self.hostile_port}"

    def start(self, timeout: float = 30.0) -> SimulatorProcess:
        self.port = self.port or free_port()
        hostile: list[str] = []
        if self.hostile_port is not None:
            self.hostile_port = self.hostile_port or free_port()
            hostile = ["--hostile-port", str(self.hostile_port)]
        self.process = _spawn(
            [
                sys.executable,
                "-m",
                "moderation_simulator",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--latency-median-ms",
                str(self.latency_median_ms),
                "--latency-p99-ms",
                str(self.latency_p99_ms),
                *hostile,
                *self.extra_args,
            ],
            self.log_path,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simulator exited with code {self.process.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("simulator did not answer /healthz in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def admin(self, path: str, json: Any = None, content: bytes | None = None) -> Any:
        resp = httpx.post(self.url + path, json=json, content=content, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def reset(self) -> None:
        self.admin("/_admin/reset")

    def add_csam_image(self, data: bytes) -> str:
        return str(self.admin("/_admin/csam/media", content=data)["hash"])

    def force_scores(
        self, scores: dict[str, float], *, media: bytes | None = None, text: str | None = None
    ) -> None:
        body: dict[str, Any] = {"scores": scores}
        if media is not None:
            body["media_b64"] = base64.b64encode(media).decode()
        if text is not None:
            body["text"] = text
        self.admin("/_admin/scores", json=body)

    def host_media(self, name: str, data: bytes, content_type: str, *, fail_first: int = 0) -> str:
        """The URL of ``data``; ``fail_first``: its first downloads answer 503."""
        resp = httpx.put(
            f"{self.url}/media/{name}",
            content=data,
            headers={"content-type": content_type},
            params={"fail_first": fail_first} if fail_first else None,
        )
        resp.raise_for_status()
        return str(resp.json()["url"])

    def index_add(self, data: bytes, metadata: str, tenant: str = "demo") -> dict[str, Any]:
        resp = httpx.post(
            self.url + "/api/v2/custom_index/add/sync",
            headers={"authorization": f"token {DEFAULT_KEYS['index']}"},
            data={"metadata": index_metadata.encode(tenant, metadata)},
            files={"media": ("seed.png", data, "image/png")},
            timeout=30,
        )
        resp.raise_for_status()
        return dict(resp.json())

    def set_faults(self, faults: dict[str, float]) -> dict[str, float]:
        return dict(self.admin("/_admin/faults", json=faults))

    def set_balance(self, project: str, credits: int | None) -> None:
        self.admin("/_admin/balance", json={"project": project, "credits": credits})

    def set_rate_limit(self, rps: float | None, burst: float | None = None) -> None:
        self.admin("/_admin/rate_limit", json={"rps": rps, "burst": burst})

    def add_csam_md5(self, *md5: str) -> None:
        self.admin("/_admin/csam/md5", json={"md5": list(md5)})

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/_admin/stats", timeout=10).json())


def consumer_env(
    bootstrap: str,
    simulator_url: str,
    *,
    group: str = "moderation",
    topics: dict[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for ``python -m consumer run`` against a local broker and the simulator."""
    env = {
        **os.environ,
        "MODERATION_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MODERATION_KAFKA__GROUP_ID": group,
        "MODERATION_HIVE__BASE_URL": simulator_url,
        "MODERATION_HIVE__VISUAL_KEY": DEFAULT_KEYS["visual"],
        "MODERATION_HIVE__TEXT_KEY": DEFAULT_KEYS["text"],
        "MODERATION_HIVE__CSAM_KEY": DEFAULT_KEYS["csam"],
        "MODERATION_HIVE__INDEX_KEY": DEFAULT_KEYS["index"],
        # the callback receiver: loopback, a free port, one token shared by every local process
        "MODERATION_CALLBACKS__HOST": "127.0.0.1",
        "MODERATION_CALLBACKS__PORT": "0",
        "MODERATION_CALLBACKS__TOKEN": "local-callback-token",
        "MODERATION_HEALTH__HOST": "127.0.0.1",
        "MODERATION_HEALTH__PORT": "0",
        # media hosted by the simulator on loopback may be downloaded (the egress policy refuses
        # loopback otherwise)
        "MODERATION_MEDIA__ALLOW_NETWORKS": '["127.0.0.1/32"]',
    }
    for name, topic in (topics or {}).items():
        env[f"MODERATION_KAFKA__{name.upper()}"] = topic
    env.update(extra)
    return env


@dataclass
class ConsumerProcess:
    """``python -m consumer run`` as a child process (so tests can SIGTERM or SIGKILL it)."""

    env: dict[str, str]
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    launcher: list[str] = field(default_factory=list)  # e.g. ``ip netns exec <ns>``: on another host
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ConsumerProcess:
        self.process = _spawn(
            [*self.launcher, sys.executable, "-m", "consumer", "run", *self.args], self.log_path, self.env
        )
        return self

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def json_log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines a process wrote to ``path`` so far (other lines skipped)."""
    lines = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


def upload(
    kind: MediaType,
    *,
    upload_id: str | None = None,
    tenant: str = "demo",
    data: bytes | None = None,
    url: str | None = None,
    text: str | None = None,
    content_type: str | None = None,
) -> UploadEvent:
    return UploadEvent(
        upload_id=upload_id or f"up-{uuid.uuid4().hex[:12]}",
        tenant_id=tenant,
        user_id="user-1",
        media_type=kind,
        created_at=int(time.time() * 1000),
        media_url=url,
        media_bytes=data,
        text=text,
        content_sha256=hashlib.sha256(data).hexdigest() if data else None,
        content_type=content_type,
        size_bytes=len(data) if data else None,
    )


def produce_uploads(
    bootstrap: str,
    topic: str,
    uploads: Iterable[UploadEvent],
    codec: Codec | None = None,
    raw: Iterable[tuple[bytes | None, bytes]] = (),
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> int:
    """Uploads in ``codec``'s framing (default: single-object encoding), then ``raw`` records;
    ``headers`` on each upload (e.g. the upload service's ``traceparent``)."""
    codec = codec or AvroCodec()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "logger": QUIET,
        }
    )
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err.str())

    def send(
        key: bytes | None, value: bytes, with_headers: list[tuple[str, str | bytes | None]] | None = None
    ) -> None:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=with_headers, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let the broker take some first
                producer.poll(0.1)
        producer.poll(0)

    count = 0
    for u in uploads:
        send(u.upload_id.encode(), codec.encode("UploadEvent", u.to_avro(), topic=topic), headers)
        count += 1
    for key, value in raw:
        send(key, value)
        count += 1
    if producer.flush(60):
        raise RuntimeError(f"uploads to {topic} not acknowledged by the broker")
    if failures:
        raise RuntimeError(f"{len(failures)} uploads to {topic} failed: {failures[0]}")
    return count


def reader(
    bootstrap: str, topics: list[str], isolation: str = "read_committed", group: str | None = None
) -> Consumer:
    """A consumer subscribed to ``topics`` from their beginning, committing nothing."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "logger": QUIET,
        }
    )
    consumer.subscribe(topics)
    return consumer


def iter_messages(
    bootstrap: str, topic: str, *, timeout: float, group: str | None = None, isolation: str = "read_committed"
) -> Iterator[Message]:
    """Records of ``topic`` from the beginning until ``timeout`` seconds pass (caller stops early)."""
    consumer = reader(bootstrap, [topic], isolation, group)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if not msg.error():
                    yield msg
    finally:
        consumer.close()


def iter_verdicts(
    bootstrap: str,
    topic: str,
    *,
    timeout: float,
    group: str | None = None,
    isolation: str = "read_committed",
    codec: Codec | None = None,
) -> Iterator[ModerationVerdict]:
    """Verdicts from the beginning of ``topic`` until ``timeout`` seconds pass (caller stops early);
    ``codec``: a ``RegistryCodec`` for verdicts in the Confluent framing."""
    codec = codec or AvroCodec()
    for msg in iter_messages(bootstrap, topic, timeout=timeout, group=group, isolation=isolation):
        yield ModerationVerdict.from_avro(decode_blocking(codec, msg.value(), "ModerationVerdict", topic))


def read_dead_letters(
    bootstrap: str, topic: str, count: int, *, timeout: float = 60.0, codec: Codec | None = None
) -> list[tuple[DeadLetter, dict[str, bytes]]]:
    """The first ``count`` dead letters of ``topic`` with their headers (fewer if the deadline passes)."""
    codec = codec or AvroCodec()
    found: list[tuple[DeadLetter, dict[str, bytes]]] = []
    for msg in iter_messages(bootstrap, topic, timeout=timeout):
        letter = DeadLetter.from_avro(decode_blocking(codec, msg.value(), "DeadLetter", topic))
        headers: list[tuple[str, bytes | None]] = list(msg.headers() or [])  # type: ignore[arg-type]
        found.append((letter, {k: v for k, v in headers if v is not None}))
        if len(found) >= count:
            break
    return found


def read_verdicts(
    bootstrap: str, topic: str, expected: set[str], *, timeout: float = 120.0, codec: Codec | None = None
) -> list[ModerationVerdict]:
    """All verdicts read until every id in ``expected`` has one (or the deadline passes)."""
    seen: list[ModerationVerdict] = []
    missing = set(expected)
    for verdict in iter_verdicts(bootstrap, topic, timeout=timeout, codec=codec):
        seen.append(verdict)
        missing.discard(verdict.upload_id)
        if not missing:
            break
    return seen


class TopicReader:
    """Reads topics from the beginning in a background thread, handing each record to ``handle``
    under ``self._lock``; tests wait on what subclasses collect, with deadlines."""

    def __init__(self, bootstrap: str, topics: list[str], isolation: str = "read_committed") -> None:
        self._bootstrap, self._topics, self._isolation = bootstrap, topics, isolation
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self.codec = AvroCodec()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        consumer = reader(self._bootstrap, self._topics, self._isolation)
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if not msg.error():
                        with self._lock:
                            self.handle(msg)
        finally:
            consumer.close()

    def handle(self, msg: Message) -> None:
        raise NotImplementedError


class VerdictCollector(TopicReader):
    """Counts the verdicts of a topic per upload id."""

    def __init__(self, bootstrap: str, topic: str, isolation: str = "read_committed") -> None:
        super().__init__(bootstrap, [topic], isolation)
        self.counts: dict[str, int] = {}

    def handle(self, msg: Message) -> None:
        upload_id = self.codec.decode(msg.value(), "ModerationVerdict")["upload_id"]
        self.counts[upload_id] = self.counts.get(upload_id, 0) + 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def wait_until(self, predicate: Any, timeout: float) -> bool:
        def holds() -> bool:
            with self._lock:
                return bool(predicate(self.counts))

        return wait_until(holds, timeout, 0.05)

    def accounting(self, expected: set[str]) -> dict[str, int]:
        with self._lock:
            seen = set(self.counts)
            return {
                "uploads": len(expected),
                "verdicts": sum(self.counts.values()),
                "duplicates": sum(c - 1 for c in self.counts.values() if c > 1),
                "missing": len(expected - seen),
            }


def wait_until(condition: Callable[[], bool], within_s: float, poll_s: float = 0.1) -> bool:
    """Poll ``condition`` until it holds (True) or the deadline passes (False)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


async def wait_until_async(condition: Callable[[], bool], within_s: float, poll_s: float = 0.05) -> bool:
    """``wait_until`` for coroutines: the event loop keeps running while it polls."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)
    return True
