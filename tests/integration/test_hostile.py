"""Hostile input on the real broker: media servers, providers and records crafted to hurt. Every
record ends as exactly one verdict or one dead letter, offsets commit, other records keep flowing,
and the process never exits or stops answering ``/healthz``; endless and giant bodies stay within a
memory bound. Media and provider answers come from the simulator's hostile server."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource

from consumer.config import Settings
from consumer.core.records import Decision, MediaType, UploadEvent
from consumer.serde import AvroCodec
from moderation_devtools.broker import free_port
from moderation_devtools.samples import bomb_png
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    TopicReader,
    consumer_env,
    produce_uploads,
    upload,
    wait_until,
    wait_until_async,
)
from moderation_simulator.state import DEFAULT_KEYS

from .conftest import Topics

pytestmark = pytest.mark.integration
CODEC = AvroCodec()
IMAGE, TEXT = MediaType.IMAGE, MediaType.TEXT


@dataclass
class Outcome:
    kind: str  # verdict or dead_letter
    what: str  # decision or error class
    detail: str  # reason labels or the error message


class Outcomes(TopicReader):
    """Every verdict and dead letter, by the input offset it answers."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        super().__init__(bootstrap, [topics.verdicts, topics.dlq])
        self._dlq = topics.dlq
        self.by_offset: dict[tuple[int, int], list[Outcome]] = {}
        self.raw: list[bytes] = []

    def handle(self, msg: Message) -> None:
        value = msg.value() or b""
        self.raw.append(value)
        if msg.topic() == self._dlq:
            d = CODEC.decode(value, "DeadLetter")
            found = Outcome("dead_letter", d["error_class"], d["error_message"])
        else:
            d = CODEC.decode(value, "ModerationVerdict")
            labels = " ".join(f"{r['label']}={r['detail']}" for r in d["reasons"])
            found = Outcome("verdict", d["decision"], labels)
        self.by_offset.setdefault((d["source_partition"], d["source_offset"]), []).append(found)

    def answered(self, count: int) -> Callable[[], bool]:
        def holds() -> bool:
            with self._lock:
                return len(self.by_offset) >= count

        return holds


def _committed_to_end(bootstrap: str, topic: str, group: str, partitions: int) -> Callable[[], bool]:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def holds() -> bool:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        committed = probe.committed(parts, 10)
        for tp in committed:
            _, high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), 10)
            if tp.offset < high:
                return False
        return True

    return holds


class HealthWatch:
    """Asks ``/healthz`` every 0.2 s in a thread; once it has answered 200, records every answer
    that was not 200."""

    def __init__(self, url: str) -> None:
        self.url, self.asked, self.answering = url, 0, False
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                status = httpx.get(self.url, timeout=2).status_code
            except httpx.HTTPError as exc:
                status, why = 0, type(exc).__name__
            else:
                why = str(status)
            self.asked += 1
            if status == 200:
                self.answering = True
            elif self.answering:
                self.failures.append(why)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _image_url(name: str, url: str) -> UploadEvent:
    return upload(IMAGE, upload_id=f"hostile-{name}", url=url, content_type="image/png")


def test_hostile_media_servers_never_stop_freeze_or_bloat_the_service(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    log_dir: Path,
    accounting: Callable[[str], None],
) -> None:
    """``media_mode: upload``: the service downloads every URL itself, through the egress policy
    (only 127.0.0.1 allowed here, where the simulator and its hostile server listen)."""
    topics = make_topics(input_partitions=1)
    hostile = sim.hostile_url
    port = hostile.rsplit(":", 1)[1]
    cases = {
        # framing no client should accept: errors, never loops (fail closed: REVIEW)
        "chunked-negative": (f"{hostile}/chunked-negative/a.png", "verdict"),
        "chunked-giant": (f"{hostile}/chunked-giant/a.png", "verdict"),
        # bodies over the bound: cut while streaming; too big to upload, so Hive gets the URL
        "endless": (f"{hostile}/endless/a.png", "verdict"),
        "endless-close": (f"{hostile}/endless-close/a.png", "verdict"),
        "huge-length": (f"{hostile}/huge-length/a.png", "verdict"),
        "drip": (f"{hostile}/drip/a.png", "verdict"),
        # addresses inside our network, as written and through redirects: refused, dead letters
        "metadata": ("http://169.254.169.254/latest/meta-data/", "dead_letter"),
        "redirect-metadata": (f"{hostile}/redirect-metadata/a.png", "dead_letter"),
        "other-loopback": (f"http://127.0.0.2:{port}/endless/a.png", "dead_letter"),
        "hex-loopback": (f"http://0x7f000002:{port}/endless/a.png", "dead_letter"),
        "ipv6-loopback": (f"http://[::1]:{port}/endless/a.png", "dead_letter"),
        "mapped-loopback": (f"http://[::ffff:127.0.0.2]:{port}/endless/a.png", "dead_letter"),
        "redirect-loop": (f"{hostile}/redirect-loop/a.png", "dead_letter"),
        "redirect-empty": (f"{hostile}/redirect-empty/a.png", "dead_letter"),
    }
    good = [upload(TEXT, upload_id=f"good-{i}", text=f"hello {i}") for i in range(len(cases) + 1)]
    records: list[UploadEvent] = []
    for i, (name, (url, _)) in enumerate(cases.items()):
        records += [good[i], _image_url(name, url)]
    records.append(good[-1])
    produce_uploads(kafka_bootstrap, topics.input, records)

    health_port = free_port()
    env = consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_HEALTH__PORT=str(health_port),
        MODERATION_HIVE__MEDIA_MODE="upload",
        MODERATION_HIVE__MAX_UPLOAD_BYTES=str(4 << 20),
        MODERATION_HIVE__TIMEOUT_S="5",
        MODERATION_MEDIA__DOWNLOAD_TIMEOUT_S="3",
        MODERATION_PROCESSING__RETRY_ATTEMPTS="2",
        MODERATION_PROCESSING__CHECK_DEADLINE_S="20",
        MODERATION_PROCESSING__MAX_IN_FLIGHT="8",
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_KAFKA__COMMIT_INTERVAL_MS="100",
    )
    service = ConsumerProcess(env, log_path=log_dir / "consumer.log").start()
    assert service.process is not None
    try:
        with (
            Outcomes(kafka_bootstrap, topics) as outcomes,
            HealthWatch(f"http://127.0.0.1:{health_port}/healthz") as health,
        ):
            assert wait_until(lambda: health.answering or not service.alive, 60), "no /healthz answer"
            assert wait_until(outcomes.answered(len(records)), 180), "not every record was answered"
            assert wait_until(_committed_to_end(kafka_bootstrap, topics.input, topics.group, 1), 30)
            assert service.alive, "the service exited"
            peak = _peak_rss_mb(service.process.pid)
        assert not health.failures, f"/healthz did not answer: {health.failures[:5]}"
    finally:
        assert service.terminate(60) == 0
    by_offset = outcomes.by_offset
    assert all(len(found) == 1 for found in by_offset.values()), "a record was answered twice"
    for i, (name, (_, expected)) in enumerate(cases.items()):
        (found,) = by_offset[(0, 2 * i + 1)]
        assert found.kind == expected, (name, found)
        if found.kind == "verdict":
            assert found.what != Decision.ALLOW.value, (name, found)
    for i in range(len(good)):
        (found,) = by_offset[(0, 2 * i)]
        assert (found.kind, found.what) == ("verdict", "ALLOW")
    letters = sum(o[0].kind == "dead_letter" for o in by_offset.values())
    accounting(
        f"accounting: uploads={len(records)} verdicts={len(by_offset) - letters}"
        f" dead_letters={letters} duplicates=0 missing=0"
        f" peak_rss_mb={peak:.0f} health_checks={health.asked}"
    )
    assert peak < 400, f"peak RSS {peak:.0f} MB: a body was buffered past its bound"


PROVIDER_VARIANTS = [
    "shape/score-string",
    "shape/output-not-objects",
    "shape/status-not-list",
    "shape/not-json",
    "shape/hashes-garbage",
    "shape/deep",
    "shape/giant-json",
    "chunked-negative",
    "chunked-giant",
    "endless",
    "huge-length",
    "drip",
    "echo",
    "redirect-loopback",
]


@pytest.mark.parametrize("variant", PROVIDER_VARIANTS)
async def test_a_hostile_provider_never_gets_an_upload_allowed(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    png: Callable[[int], bytes],
    variant: str,
) -> None:
    """Every Hive call answers with ``variant``: the uploads fail closed (REVIEW) or are dead letters,
    no API key reaches a verdict, and the service stays alive."""
    uploads = [
        upload(TEXT, upload_id=f"{variant}-text", text="hello"),
        upload(IMAGE, upload_id=f"{variant}-image", data=png(11), content_type="image/png"),
    ]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    settings = settings_for(
        topics,
        limits={"breaker_threshold": 1000},  # a hostile provider is not an outage to wait out here
        retry_attempts=2,
        check_deadline_s=20,
        similarity="none",
    )
    settings.hive.base_url = f"{sim.hostile_url}/{variant}"
    settings.hive.timeout_s = 2
    with Outcomes(kafka_bootstrap, topics) as outcomes:
        async with running_service(settings) as service:
            assert await wait_until_async(outcomes.answered(len(uploads)), 90), "not every upload answered"
            assert service.watch.alive().ok
    for found in outcomes.by_offset.values():
        assert len(found) == 1
        assert found[0].what != Decision.ALLOW.value, found
    for raw in outcomes.raw:
        for key in DEFAULT_KEYS.values():
            assert key.encode() not in raw, "an API key reached an output"


async def test_oversize_records_are_dead_lettered_within_the_limits(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    png: Callable[[int], bytes],
    accounting: Callable[[str], None],
) -> None:
    """Records whose dead letters would be over the producer's message.max.bytes (a record near
    1 MB with inline media; a large key and a large upload id) once crash-looped the service."""
    for mode in ("at_least_once", "exactly_once"):
        topics = make_topics(input_partitions=1)
        near_mb = upload(IMAGE, upload_id=f"near-mb-{mode}", data=b"\x89PNG" + b"x" * 1_030_000)
        huge_id = upload(TEXT, upload_id="i" * 400_000, text="hello")
        producer = Producer(
            {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 1_048_576, "acks": "all"}
        )
        producer.produce(
            topics.input, key=near_mb.upload_id.encode(), value=CODEC.encode("UploadEvent", near_mb.to_avro())
        )
        producer.produce(
            topics.input, key=b"k" * 500_000, value=CODEC.encode("UploadEvent", huge_id.to_avro())
        )
        assert producer.flush(30) == 0
        good = upload(TEXT, upload_id=f"after-{mode}", text="hello")
        produce_uploads(kafka_bootstrap, topics.input, [good])
        settings = settings_for(topics, delivery=mode, max_record_bytes=1_048_576)
        with Outcomes(kafka_bootstrap, topics) as outcomes:
            async with running_service(settings) as service:
                assert await wait_until_async(outcomes.answered(3), 90), f"{mode}: not every record answered"
                assert service.watch.alive().ok
        found = outcomes.by_offset
        assert [found[(0, o)][0].kind for o in range(3)] == ["dead_letter", "dead_letter", "verdict"], found
        assert all(len(v) == 1 for v in found.values())
        accounting(f"accounting: mode={mode} uploads=3 verdicts=1 dead_letters=2 duplicates=0 missing=0")


async def test_a_verdict_the_broker_refuses_becomes_a_dead_letter(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
) -> None:
    """The verdict topic refuses records over 200 bytes: every verdict is refused by the broker
    (not by the client), so each upload ends as its dead letter, in both delivery modes; in
    exactly-once mode through an aborted transaction and a rewind, never retried forever."""
    for mode in ("at_least_once", "exactly_once"):
        topics = make_topics(input_partitions=1)
        settings = settings_for(topics, delivery=mode)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        entry = ConfigEntry("max.message.bytes", "200", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.TOPIC, topics.verdicts, incremental_configs=[entry])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)
        uploads = [upload(TEXT, upload_id=f"refused-{mode}-{i}", text=f"hello {i}") for i in range(5)]
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        with Outcomes(kafka_bootstrap, topics) as outcomes:
            async with running_service(settings) as service:
                assert await wait_until_async(outcomes.answered(5), 90), f"{mode}: not every upload answered"
                assert service.watch.alive().ok
        kinds = {o[0].kind for o in outcomes.by_offset.values()}
        assert kinds == {"dead_letter"} and all(len(o) == 1 for o in outcomes.by_offset.values())
        assert "too large" in next(iter(outcomes.by_offset.values()))[0].detail.lower()


async def test_the_cache_bypass_upload_is_dead_lettered_never_allowed(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    png: Callable[[int], bytes],
) -> None:
    """A hash-listed image declaring the hash of a benign image moderated before: once answered
    from the cache (ALLOW). Now the cache is keyed by the hash of the bytes, and the lie is a dead
    letter naming both hashes; the same image uploaded honestly is escalated."""
    topics = make_topics(input_partitions=1)
    benign, listed = png(301), png(302)
    sim.add_csam_image(listed)
    first = upload(IMAGE, upload_id="benign", data=benign, content_type="image/png")
    liar = upload(IMAGE, upload_id="liar", data=listed, content_type="image/png")
    liar = replace(liar, content_sha256=hashlib.sha256(benign).hexdigest())
    honest = upload(IMAGE, upload_id="honest", data=listed, content_type="image/png")
    produce_uploads(kafka_bootstrap, topics.input, [first, liar, honest])
    with Outcomes(kafka_bootstrap, topics) as outcomes:
        async with running_service(settings_for(topics)):
            assert await wait_until_async(outcomes.answered(3), 90)
    found = {offset: o[0] for (_, offset), o in outcomes.by_offset.items()}
    assert (found[0].kind, found[0].what) == ("verdict", "ALLOW")
    assert (found[1].kind, found[1].what) == ("dead_letter", "InvalidRecordError")
    assert hashlib.sha256(listed).hexdigest() in found[1].detail
    assert (found[2].kind, found[2].what) == ("verdict", "ESCALATE")


async def test_a_decompression_bomb_on_the_huawei_path_is_a_dead_letter(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
    png: Callable[[int], bytes],
) -> None:
    bomb = upload(IMAGE, upload_id="bomb", data=bomb_png(), content_type="image/png")
    after = upload(IMAGE, upload_id="after-bomb", data=png(303), content_type="image/png")
    produce_uploads(kafka_bootstrap, topics.input, [bomb, after])
    settings = settings_for(topics, similarity="huawei", checks=["similarity"])
    with Outcomes(kafka_bootstrap, topics) as outcomes:
        async with running_service(settings) as service:
            assert await wait_until_async(outcomes.answered(2), 90)
            assert service.watch.alive().ok
    kinds = sorted((o[0].kind, o[0].what) for o in outcomes.by_offset.values())
    assert kinds == [("dead_letter", "PermanentError"), ("verdict", "ALLOW")]
    letter = next(o[0] for o in outcomes.by_offset.values() if o[0].kind == "dead_letter")
    assert "pixel" in letter.detail


async def test_callback_attacks_are_refused_and_the_service_goes_on(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
) -> None:
    """Deeply nested JSON (once a 500), an oversize body and a huge early callback at the service's
    own receiver: refused or relayed reduced, and uploads keep getting verdicts."""
    settings = settings_for(topics)
    async with running_service(settings) as service:
        assert await wait_until_async(lambda: service.callback_url is not None, 60)
        assert service.callback_url is not None
        async with httpx.AsyncClient(timeout=30) as client:
            deep = await client.post(service.callback_url, content=b"[" * 200_000 + b"]" * 200_000)
            assert deep.status_code == 400
            big = await client.post(
                service.callback_url, content=b'{"task_id": "x", "pad": "' + b"a" * (5 << 20) + b'"}'
            )
            assert big.status_code == 413
            padded = {"task_id": "early-1", "status": [], "padding": "p" * 3_000_000}
            relayed = await client.post(service.callback_url, json=padded)
            assert relayed.status_code == 200
        produce_uploads(kafka_bootstrap, topics.input, [upload(TEXT, upload_id="after-callbacks", text="hi")])
        with Outcomes(kafka_bootstrap, topics) as outcomes:
            assert await wait_until_async(outcomes.answered(1), 60)
        assert service.watch.alive().ok


async def test_wrong_shapes_and_echoed_keys_from_the_simulator_fail_closed_without_leaking(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    running_service: Callable[..., Any],
) -> None:
    """The simulator's hostile faults on its real endpoints, half the calls each: every upload gets
    one verdict, none carries a key."""
    sim.set_faults({"wrong_shape": 0.4, "echo_credentials": 0.4})
    uploads = [upload(TEXT, upload_id=f"faulty-{i}", text=f"text {i}") for i in range(20)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    settings = settings_for(topics, retry_attempts=2, limits={"breaker_threshold": 1000})
    with Outcomes(kafka_bootstrap, topics) as outcomes:
        async with running_service(settings) as service:
            assert await wait_until_async(outcomes.answered(len(uploads)), 90)
            assert service.watch.alive().ok
    assert all(len(o) == 1 for o in outcomes.by_offset.values())
    for raw in outcomes.raw:
        for key in DEFAULT_KEYS.values():
            assert key.encode() not in raw, "an echoed API key reached an output"
