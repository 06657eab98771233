"""The seed corpora: valid (and a few near-valid) inputs of each target, made with the project's own
encoders. ``python -m tests.fuzz.seeds`` rewrites ``corpus/<target>/``; the files are committed, so
a fuzzing run starts deep in the format rather than at random bytes. Deterministic."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from consumer.core.deadletter import DeadLetter, Failure
from consumer.core.offsetmap import encode as encode_offsets
from consumer.core.records import Decision, MediaType, ReviewDecision, UploadEvent
from consumer.serde import AvroCodec
from tests.fuzz.runner import CORPUS
from tests.fuzz.targets import TARGETS

__all__ = ["SEEDS", "write"]

_CODEC = AvroCodec()
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cf00000301010018dd8db00000000049454e44ae426082"
)
_CREATED = 1_767_225_600_000  # 2026-01-01, fixed: seeds are deterministic


def _uploads() -> list[UploadEvent]:
    return [
        UploadEvent(
            "up-1",
            "acme",
            "user-1",
            MediaType.IMAGE,
            _CREATED,
            media_url="https://media.example/a.jpg",
            content_type="image/jpeg",
            size_bytes=2048,
            metadata={"source": "app"},
        ),
        UploadEvent(
            "up-2",
            "acme",
            "user-2",
            MediaType.IMAGE,
            _CREATED,
            media_bytes=_PNG,
            content_sha256="0" * 64,
            content_type="image/png; charset=binary",
            size_bytes=len(_PNG),
        ),
        UploadEvent("up-3", "tenant-b", "user-3", MediaType.TEXT, _CREATED, text="hello there"),
        UploadEvent(
            "up-4",
            "acme",
            "user-4",
            MediaType.VIDEO,
            _CREATED,
            media_url="http://[::1]:8080/v.mp4",
            content_type="video/mp4",
        ),
        UploadEvent(
            "up-5",
            "acme",
            "user-5",
            MediaType.GIF,
            _CREATED,
            media_url="https://m.example/x.gif",
            content_type='image/gif; q="a b"',
        ),
    ]


def upload_single() -> Iterator[bytes]:
    for event in _uploads():
        yield _CODEC.encode("UploadEvent", event.to_avro())
    old = [e for e in _CODEC.versions("UploadEvent") if e is not _CODEC.schema("UploadEvent")]
    for version in old:  # an older writer schema: read with schema resolution
        record = {
            k: v
            for k, v in _uploads()[0].to_avro().items()
            if k in {f["name"] for f in version.raw["fields"]}
        }
        yield _CODEC.encode("UploadEvent", record, version=version)


def upload_confluent() -> Iterator[bytes]:
    from tests.fuzz.targets.upload_confluent import SCHEMA_IDS, WRITERS

    for selector, entry in enumerate(WRITERS):
        if entry.name != "UploadEvent":
            yield bytes([selector]) + _CODEC.encode("ReviewDecision", _reviews()[0].to_avro())[10:]
            continue
        fields = {f["name"] for f in entry.raw["fields"]}
        for event in _uploads()[:3]:
            record = {k: v for k, v in event.to_avro().items() if k in fields}
            yield bytes([selector]) + _CODEC.encode("UploadEvent", record, version=entry)[10:]
    assert len(SCHEMA_IDS) == len(WRITERS)


def _reviews() -> list[ReviewDecision]:
    return [
        ReviewDecision(
            "rv-1",
            "up-1",
            "acme",
            Decision.BLOCK,
            _CREATED,
            reviewer="r1",
            media_url="https://media.example/a.jpg",
            note="known scam image",
        ),
        ReviewDecision("rv-2", "up-2", "acme", Decision.ALLOW, _CREATED, media_bytes=_PNG),
        ReviewDecision("rv-3", "up-3", "victim;attacker", Decision.BLOCK, _CREATED, note="tenant=x;y"),
    ]


def review_decision() -> Iterator[bytes]:
    for review in _reviews():
        yield _CODEC.encode("ReviewDecision", review.to_avro())


def dead_letter() -> Iterator[bytes]:
    failure = Failure("SerializationError", "corrupt UploadEvent body", 1, _CREATED, _CREATED + 5)
    upload = _CODEC.encode("UploadEvent", _uploads()[0].to_avro())
    letters = [
        DeadLetter(b"up-1", upload, "uploads", 0, 42, failure, "up-1"),
        DeadLetter(None, b"\x00\x01garbage", "uploads", 3, 7, failure),
        DeadLetter(b"k" * 40, None, "moderation.verdicts", 1, 1 << 40, Failure("InvalidRecordError", "x", 3)),
    ]
    for letter in letters:
        yield _CODEC.encode("DeadLetter", letter.to_avro())


def commit_metadata() -> Iterator[bytes]:
    # the first byte picks BASES[byte] in targets/commit_metadata.py: 0, 1, 100, 4095, ...
    for selector, base, done in (
        (0, 0, {2, 3, 7}),
        (2, 100, {102, 103, 107}),
        (3, 4095, range(4100, 4200, 3)),
    ):
        yield bytes([selector]) + encode_offsets(base, done)[0].encode()
    yield b"\x00m1:" + b"_" * 40  # a long varint
    yield b"\x01m1:AgIDAQ"
    yield b'\x00{"other": "client"}'


def _hive_bodies() -> list[dict[str, Any]]:
    from tests.unit.test_answer_properties import HIVE_BODIES

    return list(HIVE_BODIES)


def callback_body() -> Iterator[bytes]:
    for body in _hive_bodies():
        yield orjson.dumps({"task_id": "t-1", **body})
    yield orjson.dumps({"task_id": 12, "status": "done", "response": [1, {"a": []}]})


def hive_answer() -> Iterator[bytes]:
    # (status selector 0 = 200, parser selector) as in targets/_answers.py and targets/hive_answer.py
    parsers = {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 6, 7: 5}
    for index, body in enumerate(_hive_bodies()):
        yield bytes([0, parsers[index]]) + orjson.dumps(body)
    yield bytes([13, 0x80]) + b'{"message": "slow down"}'  # 429 with Retry-After
    yield bytes([14, 7]) + b"<html>bad gateway</html>"
    yield bytes([5, 0]) + b'{"code": 400, "message": "bad request"}'


def huawei_answer() -> Iterator[bytes]:
    from tests.unit.test_answer_properties import HUAWEI_BODIES

    for index, body in enumerate(HUAWEI_BODIES):
        yield bytes([0, index % 3]) + orjson.dumps(body)
    yield bytes([5, 0]) + b'{"error_code": "IS.0004", "error_msg": "token verification failed"}'
    yield bytes([13, 0x81]) + b'{"error_code": "APIGW.0308", "error_msg": "throttled"}'


_POLICY = (CORPUS.parent.parent.parent / "consumer" / "policy" / "default_policy.yaml").read_bytes()


def policy_file() -> Iterator[bytes]:
    yield _POLICY
    yield (
        _POLICY
        + b"""tenants:
  acme:
    classification:
      visual:
        general_nsfw: {review: 0.4, block: 0.8}
  "tenant-b":
    similarity: {review: 0.9, block: 0.95}
    fail_open: [similarity]
"""
    )
    yield b"version: v2\nclassification:\n  text:\n    sexual: &b {review: 0.5}\n    violence: *b\n"


def settings_file() -> Iterator[bytes]:
    yield b"""kafka:
  bootstrap_servers: 127.0.0.1:9092
  group_id: moderation
processing:
  checks: [text]
  max_in_flight: 100
hive:
  base_url: http://127.0.0.1:8080
  text_key: k
log_level: INFO
"""
    yield b"schema_registry:\n  url: http://127.0.0.1:8081\n  auto_register: true\n"
    yield b"serialization:\n  format: single_object\n"
    yield b"media:\n  allow_networks: [10.0.0.0/8]\n"
    yield b"{}\n"


def index_metadata() -> Iterator[bytes]:
    from consumer.core.index_metadata import encode

    yield b"\x04" + encode("acme", "known scam image, case 4411").encode()
    yield b"\x06" + encode("victim", 'a "quoted" note; tenant=attacker').encode()
    yield b"\x04acmeplain note"
    yield b"\x00tenant=victim;attacker's note"
    yield b'\x00{"v": 1, "tenant": "victim;x", "note": ""}'


def writer_schema() -> Iterator[bytes]:
    from consumer.serde import AvroCodec

    codec = AvroCodec()
    for name, record in (
        ("UploadEvent", _uploads()[0].to_avro()),
        ("ReviewDecision", _reviews()[0].to_avro()),
    ):
        text = json.dumps(codec.raw(name)).encode()
        body = codec.encode(name, record)[10:]
        yield len(text).to_bytes(2, "big") + text + body
    recursive = {
        "type": "record",
        "name": "N",
        "fields": [
            {"name": "next", "type": ["null", "N"]},
            {"name": "xs", "type": {"type": "array", "items": "long"}},
        ],
    }
    text = json.dumps(recursive).encode()
    yield len(text).to_bytes(2, "big") + text + b"\x02\x02\x00"
    nulls = {
        "type": "record",
        "name": "A",
        "fields": [{"name": "xs", "type": {"type": "array", "items": "null"}}],
    }
    text = json.dumps(nulls).encode()
    yield len(text).to_bytes(2, "big") + text + b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"


SEEDS: dict[str, Callable[[], Iterator[bytes]]] = {
    "upload_single": upload_single,
    "upload_confluent": upload_confluent,
    "review_decision": review_decision,
    "dead_letter": dead_letter,
    "commit_metadata": commit_metadata,
    "callback_body": callback_body,
    "hive_answer": hive_answer,
    "huawei_answer": huawei_answer,
    "policy_file": policy_file,
    "settings_file": settings_file,
    "index_metadata": index_metadata,
    "writer_schema": writer_schema,
}


def write() -> None:
    assert set(SEEDS) == set(TARGETS), "every target has seeds"
    for target, make in SEEDS.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for index, data in enumerate(make()):
            (folder / f"seed-{index:02d}").write_bytes(data)


if __name__ == "__main__":
    write()
    print(json.dumps({t: len(list((CORPUS / t).glob("seed-*"))) for t in SEEDS}))
