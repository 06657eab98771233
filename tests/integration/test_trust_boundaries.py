"""The surfaces added after the first hostile-input work, attacked on the real broker, Apicurio and
the simulator: forged dead letters fed to replay, one tenant poisoning another's similarity index,
look-alike writer schemas, and storms of unknown schema ids. Every record ends as exactly one
verdict or dead letter, offsets commit, other records keep flowing, ``/healthz`` answers."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from consumer.checks.providers.hive_answers import parse_matches
from consumer.cli import schemas as schemas_admin
from consumer.config import Settings
from consumer.core import index_metadata
from consumer.core.deadletter import DeadLetter, Failure
from consumer.core.records import (
    Decision,
    MediaType,
    ModerationVerdict,
    ReviewDecision,
    UploadDeleted,
)
from consumer.delivery.replay import REPLAYED_ERROR_CLASS, REPLAYED_FROM, REPLAYED_SOURCE
from consumer.serde import AvroCodec
from moderation_devtools.broker import free_port
from moderation_devtools.samples import image_bytes, make_image, reencoded
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until,
)
from moderation_simulator.state import DEFAULT_KEYS
from tests.factories import avro_long

from .conftest import ReadTopic, Topics
from .test_dlq_replay import replay_cli
from .test_hostile import HealthWatch, Outcomes, _committed_to_end
from .test_media_and_maintenance import index_updates, produce, wait_for

pytestmark = pytest.mark.integration
CODEC = AvroCodec()
IMAGE, TEXT = MediaType.IMAGE, MediaType.TEXT


# --- replay ------------------------------------------------------------------------------------------


def _letter(
    source_topic: str, value: bytes, upload_id: str, error_class: str = "InvalidRecordError"
) -> bytes:
    failure = Failure(error_class, "forged", 1, 1, 1)
    letter = DeadLetter(upload_id.encode(), value, source_topic, 0, 7, failure, upload_id=upload_id)
    return CODEC.encode("DeadLetter", letter.to_avro())


def _end_offsets(bootstrap: str, topic: str, partitions: int = 4) -> int:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in range(partitions))
    finally:
        probe.close()


def test_replay_refuses_forged_letters(
    kafka_bootstrap: str, topics: Topics, sim: SimulatorProcess, read_topic: ReadTopic
) -> None:
    """Whoever can write the dead-letter topic cannot write verdicts (or anything but an input) by
    way of a routine replay; a genuine letter still goes back to the uploads topic."""
    forged_allow = ModerationVerdict(
        "v-1", "victim-upload", "victim", Decision.ALLOW, (), "p1", topics.input, 0, 1, 1
    )
    verdict_bytes = CODEC.encode("ModerationVerdict", forged_allow.to_avro())
    genuine = upload(TEXT, upload_id="genuine", text="hello")
    letters = [
        _letter(topics.verdicts, verdict_bytes, "to-verdicts"),  # an output topic
        _letter(topics.review, verdict_bytes, "to-review"),
        _letter(topics.dlq, verdict_bytes, "to-dlq"),  # the dead letter topic itself
        _letter("somewhere.else", verdict_bytes, "to-unknown"),
        _letter(topics.input, verdict_bytes, "verdict-as-upload"),  # an input, but not an upload
        _letter(topics.input, b"\x00\x00\x00\x00\x07not avro", "junk-as-upload"),
        _letter(topics.input, CODEC.encode("UploadEvent", genuine.to_avro()), "genuine"),
    ]
    produce_uploads(kafka_bootstrap, topics.dlq, [], raw=[(b"k", letter) for letter in letters])
    env = consumer_env(kafka_bootstrap, sim.url, group=topics.group, topics=topics.env())

    dry = replay_cli(env, "--error-class", "InvalidRecordError", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("refused") >= 6 and dry.stdout.count("would replay") == 1, dry.stdout
    assert f"-> {topics.input}: 1" in dry.stdout  # the targets, listed

    to_output = replay_cli(env, "--to-topic", topics.verdicts)
    assert to_output.returncode == 2 and "not an input topic" in to_output.stderr
    assert "Traceback" not in to_output.stderr

    done = replay_cli(env, "--error-class", "InvalidRecordError")
    assert done.returncode == 0, done.stderr
    assert "matched 7, replayed 1, refused 6" in done.stdout, done.stdout
    for name in ("to-verdicts", "to-review", "to-dlq", "to-unknown", "verdict-as-upload", "junk-as-upload"):
        assert f"upload {name})" in done.stdout and "refused" in done.stdout

    for topic in (topics.verdicts, topics.review, topics.escalations):
        assert _end_offsets(kafka_bootstrap, topic) == 0, f"something reached {topic}"
    assert _end_offsets(kafka_bootstrap, topics.dlq) == len(letters)  # nothing written back
    replayed = read_topic(topics.input, timeout=10)  # all there is: exactly one
    assert len(replayed) == 1
    headers = dict(replayed[0].headers() or [])
    assert CODEC.decode(replayed[0].value(), "UploadEvent")["upload_id"] == "genuine"
    assert headers[REPLAYED_SOURCE] == f"{topics.input}:0:7".encode()
    assert headers[REPLAYED_ERROR_CLASS] == b"InvalidRecordError"
    assert headers[REPLAYED_FROM].startswith(f"{topics.dlq}:".encode())


# --- tenants -----------------------------------------------------------------------------------------


def _index_owners(sim: SimulatorProcess, data: bytes) -> list[str | None]:
    """Who owns each entry of the simulator's Hive index that matches ``data``."""
    answer = httpx.post(
        f"{sim.url}/api/v2/custom_index/query/sync",
        headers={"authorization": f"token {DEFAULT_KEYS['index']}"},
        files={"media": ("q.png", data, "image/png")},
        timeout=10,
    ).json()
    return [(m.tenant if (m := index_metadata.parse(x.metadata)) else None) for x in parse_matches(answer)]


def _add_legacy_entry(sim: SimulatorProcess, data: bytes) -> None:
    httpx.post(
        f"{sim.url}/api/v2/custom_index/add/sync",
        headers={"authorization": f"token {DEFAULT_KEYS['index']}"},
        files={"media": ("l.png", data, "image/png")},
        data={"metadata": "tenant=victim;attacker's note"},
        timeout=10,
    ).raise_for_status()


async def test_tenant_isolation_in_index(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    read_topic: ReadTopic,
) -> None:
    """Tenant ``victim`` never matches another tenant's entries, whatever the attacker files."""
    victims, attackers, legacy = make_image(701), make_image(702), make_image(703)
    now = int(time.time() * 1000)
    _add_legacy_entry(sim, image_bytes(legacy))  # the index's old, ambiguous format, naming the victim

    def review(review_id: str, tenant: str, image: Any, note: str) -> ReviewDecision:
        return ReviewDecision(
            review_id,
            f"up-{review_id}",
            tenant,
            Decision.BLOCK,
            now,
            media_bytes=image_bytes(image),
            note=note,
        )

    forged = review("r-forged", "victim;attacker", victims, "attacker's note")
    theirs = review("r-theirs", "attacker", victims, "attacker's own ban")
    own = review("r-own", "victim", attackers, "victim's ban")
    async with running_service(settings_for(topics)):
        added = index_updates("add", "applied")
        for decision in (forged, theirs, own):
            produce(
                kafka_bootstrap, topics.decisions, "ReviewDecision", decision.upload_id, decision.to_avro()
            )
        await wait_for(lambda: index_updates("add", "applied") == added + 2)
        # the attacker's deletion of the victim's image removes nothing of the victim's
        removed = index_updates("remove", "not_found")
        deletion = UploadDeleted("up-x", "attacker", now, media_bytes=image_bytes(attackers))
        produce(kafka_bootstrap, topics.deleted, "UploadDeleted", "up-x", deletion.to_avro())
        await wait_for(lambda: index_updates("remove", "not_found") == removed + 1)
        assert sorted(map(str, _index_owners(sim, image_bytes(attackers)))) == ["victim"]

        uploads = [
            upload(IMAGE, upload_id="victim-1", tenant="victim", data=reencoded(victims)),
            upload(IMAGE, upload_id="victim-2", tenant="victim", data=reencoded(legacy)),
            upload(IMAGE, upload_id="victim-3", tenant="victim", data=reencoded(attackers)),
            upload(IMAGE, upload_id="attacker-1", tenant="attacker", data=reencoded(victims)),
            upload(IMAGE, upload_id="attacker-2", tenant="attacker", data=reencoded(attackers)),
        ]
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        verdicts = await asyncio.to_thread(
            read_verdicts, kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=60
        )
    by_id = {v.upload_id: v for v in verdicts}
    assert by_id["victim-1"].decision is Decision.ALLOW  # the attacker's entry for it is not the victim's
    assert by_id["victim-2"].decision is Decision.ALLOW  # the legacy entry belongs to no one
    assert by_id["victim-3"].decision is Decision.BLOCK  # the victim's own entry
    assert by_id["victim-3"].reasons[0].detail == "review r-own: confirmed BLOCK (victim's ban)"
    assert by_id["attacker-1"].decision is Decision.BLOCK  # the attacker's entry, for the attacker
    assert by_id["attacker-2"].decision is Decision.ALLOW
    for verdict in verdicts:
        assert all(
            "attacker" not in (r.detail or "") for r in verdict.reasons if verdict.tenant_id == "victim"
        )
    letters = read_topic(
        topics.dlq, decode=lambda m: DeadLetter.from_avro(CODEC.decode(m.value(), "DeadLetter")), timeout=10
    )
    assert [(d.upload_id, d.failure.error_class) for d in letters] == [("up-r-forged", "InvalidRecordError")]
    assert "malformed tenant_id" in letters[0].failure.message


# --- writer schemas and the registry -----------------------------------------------------------------


class CountingProxy:
    """A reverse proxy in front of the registry that counts the requests it forwards, by path."""

    def __init__(self, target: str) -> None:
        parts = httpx.URL(target)
        self.target = f"{parts.scheme}://{parts.host}:{parts.port}"
        self.path = parts.path
        self.paths: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.paths.append(self.path)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = httpx.request(
                    self.command, proxy.target + self.path, content=body, headers=headers, timeout=30
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in (
                        "transfer-encoding",
                        "content-length",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *_: Any) -> None:
                return

        self.port = free_port()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def count(self, fragment: str = "") -> int:
        with self._lock:
            return sum(fragment in p for p in self.paths)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _upload_body(upload_id: str) -> bytes:
    """The Avro body of a TEXT upload in the current UploadEvent schema (no framing)."""
    return CODEC.encode("UploadEvent", upload(TEXT, upload_id=upload_id, text="hi").to_avro())[10:]


def _lookalike_null_array() -> dict[str, Any]:
    schema = dict(CODEC.raw("UploadEvent"))
    schema["fields"] = [
        *schema["fields"],
        {"name": "pad", "type": {"type": "array", "items": "null"}, "default": []},
    ]
    return schema


def _lookalike_recursive() -> dict[str, Any]:
    schema = dict(CODEC.raw("UploadEvent"))
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    schema["fields"] = [*schema["fields"], {"name": "chain", "type": ["null", node], "default": None}]
    return schema


def _framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


@pytest.fixture
def registry_run(
    kafka_bootstrap: str,
    registry_url: str,
    sim: SimulatorProcess,
    settings_for: Callable[..., Settings],
    log_dir: Path,
) -> Iterator[Callable[..., tuple[ConsumerProcess, int]]]:
    """``start(topics, registry_url)``: ``schemas register`` for the topics, then a service process
    writing single-object verdicts (read by ``Outcomes``) and reading both framings; its health port."""
    started: list[ConsumerProcess] = []

    def start(topics: Topics, url: str) -> tuple[ConsumerProcess, int]:
        settings = settings_for(topics, schema_registry={"url": registry_url})
        lines: list[str] = []
        assert schemas_admin.register(settings, echo=lines.append) == 0, lines
        health_port = free_port()
        env = consumer_env(
            kafka_bootstrap,
            sim.url,
            group=topics.group,
            topics=topics.env(),
            MODERATION_HEALTH__PORT=str(health_port),
            MODERATION_SCHEMA_REGISTRY__URL=url,
            MODERATION_SERIALIZATION__FORMAT="single_object",
            MODERATION_KAFKA__CREATE_TOPICS="false",
            MODERATION_KAFKA__COMMIT_INTERVAL_MS="100",
        )
        service = ConsumerProcess(env, log_path=log_dir / f"consumer-{len(started)}.log").start()
        started.append(service)
        return service, health_port

    yield start
    for service in started:
        if service.alive:
            assert service.terminate() == 0


def test_lookalike_schema_costs_one_dead_letter(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    registry_url: str,
    registry_run: Callable[..., tuple[ConsumerProcess, int]],
) -> None:
    """Look-alikes of UploadEvent registered under the input subject itself (auto-registration, a
    compatible change) and under another subject: an array of nulls declaring 2^62 items, and a
    recursive field nested 400,000 deep. Each costs one dead letter, without being decoded."""
    topics = make_topics(input_partitions=1)
    service, health_port = registry_run(topics, registry_url)
    client = SchemaRegistryClient({"url": registry_url})
    try:
        # the input subject's compatibility (BACKWARD) lets a field with a default be added
        null_array = client.register_schema(
            f"{topics.input}-value", Schema(json.dumps(_lookalike_null_array()), "AVRO")
        )
        recursive = client.register_schema(
            f"elsewhere-{topics.group}-value", Schema(json.dumps(_lookalike_recursive()), "AVRO")
        )
    finally:
        client.close()
    freeze = _upload_body("freeze") + avro_long(1 << 62) + b"\x00"
    deep = _upload_body("deep") + b"\x02" + b"\x02" * 400_000 + b"\x00"
    good = [upload(TEXT, upload_id=f"good-{i}", text=f"hello {i}") for i in range(4)]
    produce_uploads(kafka_bootstrap, topics.input, good[:1])
    produce_uploads(
        kafka_bootstrap,
        topics.input,
        [],
        raw=[
            (b"freeze", _framed(null_array, freeze)),
            (b"deep", _framed(recursive, deep)),
            (b"freeze-2", _framed(null_array, freeze)),
        ],
    )
    produce_uploads(kafka_bootstrap, topics.input, good[1:])
    with (
        Outcomes(kafka_bootstrap, topics) as outcomes,
        HealthWatch(f"http://127.0.0.1:{health_port}/healthz") as health,
    ):
        assert wait_until(outcomes.answered(7), 90), outcomes.by_offset
        assert wait_until(_committed_to_end(kafka_bootstrap, topics.input, topics.group, 1), 60)
    assert service.alive
    assert health.answering and not health.failures, health.failures
    assert all(len(found) == 1 for found in outcomes.by_offset.values()), outcomes.by_offset
    letters = [found[0] for found in outcomes.by_offset.values() if found[0].kind == "dead_letter"]
    assert len(letters) == 3 and all(d.what == "SerializationError" for d in letters)
    assert sum("take no bytes" in d.detail for d in letters) == 2
    assert sum("recursive" in d.detail for d in letters) == 1
    assert sum(found[0].kind == "verdict" for found in outcomes.by_offset.values()) == 4


def test_unknown_id_storm_costs_few_registry_requests(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    registry_url: str,
    registry_run: Callable[..., tuple[ConsumerProcess, int]],
) -> None:
    """400 records carrying one unknown schema id and 200 carrying one refused id: each a dead
    letter, a handful of registry requests in all."""
    topics = make_topics(input_partitions=1)
    client = SchemaRegistryClient({"url": registry_url})
    try:
        refused = client.register_schema(
            f"elsewhere-{topics.group}-value", Schema(json.dumps(_lookalike_null_array()), "AVRO")
        )
    finally:
        client.close()
    unknown = 987_654_321
    with CountingProxy(registry_url) as proxy:
        service, _ = registry_run(topics, proxy.url)
        first = upload(TEXT, upload_id="first", text="hello")
        produce_uploads(kafka_bootstrap, topics.input, [first])
        with Outcomes(kafka_bootstrap, topics) as outcomes:
            assert wait_until(outcomes.answered(1), 60)
            before = proxy.count()
            body = _upload_body("storm")
            storm = [(f"u{i}".encode(), _framed(unknown, body)) for i in range(400)]
            storm += [(f"r{i}".encode(), _framed(refused, body)) for i in range(200)]
            produce_uploads(kafka_bootstrap, topics.input, [], raw=storm)
            produce_uploads(kafka_bootstrap, topics.input, [upload(TEXT, upload_id="last", text="bye")])
            assert wait_until(outcomes.answered(602), 120), len(outcomes.by_offset)
        assert wait_until(_committed_to_end(kafka_bootstrap, topics.input, topics.group, 1), 60)
        during = proxy.count() - before
    assert service.alive
    found = [f[0] for f in outcomes.by_offset.values()]
    assert sum(f.kind == "dead_letter" for f in found) == 600 and sum(f.kind == "verdict" for f in found) == 2
    assert during <= 5, proxy.paths[-during:]
