from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from fastavro.schema import fingerprint

from consumer.core.records import (
    CheckRun,
    ClassificationSummary,
    ClassScore,
    CsamResult,
    Decision,
    MediaType,
    ModerationVerdict,
    Reason,
    SimilarityMatch,
    TimeRange,
    UploadEvent,
    verdict_id,
)
from consumer.errors import SerializationError
from consumer.serde import SINGLE_OBJECT_MAGIC, AvroCodec, default_schema_dir

CODEC = AvroCodec()


def an_upload(**kw: object) -> UploadEvent:
    base: dict[str, object] = dict(
        upload_id="u-1",
        tenant_id="t",
        user_id="u",
        media_type=MediaType.IMAGE,
        created_at=1_700_000_000_000,
        media_bytes=b"\x89PNG",
        metadata={"k": "v"},
    )
    base.update(kw)
    return UploadEvent(**base)  # type: ignore[arg-type]


def a_verdict() -> ModerationVerdict:
    return ModerationVerdict(
        verdict_id=verdict_id("u-1", "p1"),
        upload_id="u-1",
        tenant_id="t",
        decision=Decision.BLOCK,
        reasons=(Reason("visual", "general_nsfw", 0.97, 0.9),),
        policy_version="p1",
        source_topic="uploads",
        source_partition=3,
        source_offset=42,
        processed_at=1_700_000_000_500,
        csam=CsamResult(False),
        classification=ClassificationSummary(
            (ClassScore("general_nsfw", 0.97),), (TimeRange(1.0, 3.0, "general_nsfw", 0.97),)
        ),
        similarity=(SimilarityMatch("id", 0.95, "meta", None),),
        checks=(CheckRun("visual", "hive", 12.5, "ok", "m", "1", 2),),
        trace_id=None,
    )


def test_upload_round_trip() -> None:
    u = an_upload()
    data = CODEC.encode("UploadEvent", u.to_avro())
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert UploadEvent.from_avro(CODEC.decode(data, "UploadEvent")) == u


def test_tagged_verdict_encodes_the_same_bytes() -> None:
    """The outputs encode the verdict with its record-typed union branches named (fastavro's tuple
    notation): the same bytes as the plain dict, and the same verdict back."""
    v = a_verdict()
    tagged = v.to_avro(tagged=True)
    assert tagged["csam"][0] == "moderation.events.CsamResult"
    assert tagged["classification"][0] == "moderation.events.ClassificationSummary"
    data = CODEC.encode("ModerationVerdict", tagged)
    assert data == CODEC.encode("ModerationVerdict", v.to_avro())
    assert ModerationVerdict.from_avro(CODEC.decode(data, "ModerationVerdict")) == v
    bare = replace(v, csam=None, classification=None)
    assert bare.to_avro(tagged=True) == bare.to_avro()


def test_verdict_round_trip() -> None:
    v = a_verdict()
    assert (
        ModerationVerdict.from_avro(
            CODEC.decode(CODEC.encode("ModerationVerdict", v.to_avro()), "ModerationVerdict")
        )
        == v
    )


def test_fingerprint_is_crc64_avro_little_endian() -> None:
    entry = CODEC.schema("UploadEvent")
    assert entry.fingerprint.hex() == fingerprint(entry.canonical, "CRC-64-AVRO")


def test_verdict_id_is_deterministic() -> None:
    assert verdict_id("a", "p") == verdict_id("a", "p") != verdict_id("a", "q")


def test_verdict_id_is_the_uuid5_of_upload_and_policy() -> None:
    namespace = uuid.UUID("6f1c2a4e-3b1d-5e8f-9a0b-7c6d5e4f3a2b")
    for upload_id, version in (("a", "p"), ("up-0123456789ab", "default-2026.11"), ("ü-ß", "v\x00")):
        assert verdict_id(upload_id, version) == str(uuid.uuid5(namespace, f"{upload_id}\x00{version}"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "empty value"),
        (b"", "empty value"),
        (b'{"upload_id": 1}', "not an Avro single-object"),
        (SINGLE_OBJECT_MAGIC + b"\x00" * 8 + b"\x02", "unknown schema fingerprint"),
    ],
)
def test_garbage_is_a_serialization_error(data: bytes | None, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        CODEC.decode(data, "UploadEvent")


def test_truncated_and_padded_records_are_rejected() -> None:
    data = CODEC.encode("UploadEvent", an_upload().to_avro())
    with pytest.raises(SerializationError, match="corrupt UploadEvent"):
        CODEC.decode(data[:-5], "UploadEvent")
    with pytest.raises(SerializationError, match="trailing bytes"):
        CODEC.decode(data + b"\x00", "UploadEvent")


def test_a_verdict_is_not_an_upload() -> None:
    with pytest.raises(SerializationError, match="is a ModerationVerdict, expected UploadEvent"):
        CODEC.decode(CODEC.encode("ModerationVerdict", a_verdict().to_avro()), "UploadEvent")


def test_encoding_an_invalid_record_is_a_serialization_error() -> None:
    record = an_upload().to_avro()
    record["media_type"] = "AUDIO"
    with pytest.raises(SerializationError, match="cannot encode UploadEvent"):
        CODEC.encode("UploadEvent", record)


def test_every_field_is_documented_and_new_fields_have_defaults() -> None:
    def fields(schema: dict[str, object]) -> list[dict[str, object]]:
        found = []
        for f in schema.get("fields", []):  # type: ignore[union-attr]
            found.append(f)
            t = f["type"]
            for candidate in t if isinstance(t, list) else [t]:
                if isinstance(candidate, dict):
                    found += fields(candidate)
                    items = candidate.get("items")
                    if isinstance(items, dict):
                        found += fields(items)
        return found

    for path in default_schema_dir().glob("*.avsc"):
        schema = json.loads(path.read_text())
        assert schema["namespace"] == "moderation.events" and schema["doc"]
        for f in fields(schema):
            assert f.get("doc"), f"{path.name}: field {f['name']} has no doc"


def test_older_writer_schemas_still_decode(tmp_path: Path) -> None:
    """BACKWARD: a record written with an older UploadEvent (without `metadata`) reads with today's."""
    current = json.loads((default_schema_dir() / "UploadEvent.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "metadata"])
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "UploadEvent.v0.avsc").write_text(json.dumps(old))
    for name in ("UploadEvent", "ModerationVerdict", "DeadLetter"):
        (tmp_path / f"{name}.avsc").write_text((default_schema_dir() / f"{name}.avsc").read_text())
    codec = AvroCodec(tmp_path)
    (older,) = [v for v in codec.versions("UploadEvent") if v != codec.schema("UploadEvent")]
    record = an_upload().to_avro()
    del record["metadata"]
    decoded = codec.decode(codec.encode("UploadEvent", record, version=older), "UploadEvent")
    assert decoded["metadata"] == {} and decoded["upload_id"] == "u-1"
