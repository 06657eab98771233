"""The poison corpus: every kind of bad input ends as a dead letter (original bytes, provenance
headers) or a verdict with a reason, the partition keeps flowing and the process never crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from consumer.core.deadletter import HEADERS
from consumer.core.records import MediaType, UploadEvent
from consumer.serde import AvroCodec
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import (
    SimulatorProcess,
    produce_uploads,
    read_dead_letters,
    read_verdicts,
    upload,
)

pytestmark = pytest.mark.integration
IMAGE, TEXT = MediaType.IMAGE, MediaType.TEXT
CODEC = AvroCodec()


@dataclass
class Poison:
    kind: str
    key: bytes | None
    value: bytes
    dead_letter: str | None = None  # expected error class; None: a verdict with a reason
    says: str = ""  # expected in the error message, or the verdict's reason label


def encoded(u: UploadEvent) -> bytes:
    return CODEC.encode("UploadEvent", u.to_avro())


def with_bad_enum(u: UploadEvent) -> bytes:
    """The media_type enum index (after three short strings) set to a symbol the schema lacks."""
    data = bytearray(encoded(u))
    at = 10 + sum(1 + len(s.encode()) for s in (u.upload_id, u.tenant_id, u.user_id))
    assert data[at] == 0  # IMAGE, zigzag-encoded index 0
    data[at] = 14  # index 7
    return bytes(data)


def corpus(sim: SimulatorProcess) -> list[Poison]:
    png = image_bytes(make_image(7), "PNG")

    def up(kind: str, **kw: Any) -> UploadEvent:
        fields: dict[str, Any] = {"data": png, "content_type": "image/png"}
        fields.update(kw)
        return upload(IMAGE, upload_id=f"poison-{kind}", **fields)

    def item(kind: str, u: UploadEvent, dead_letter: str | None, says: str) -> Poison:
        return Poison(kind, u.upload_id.encode(), encoded(u), dead_letter, says)

    good = encoded(up("template"))
    ser, inv, perm = "SerializationError", "InvalidRecordError", "PermanentError"
    return [
        Poison("not-avro", b"poison-not-avro", b'{"upload_id": "json?"}', ser, "not an Avro single-object"),
        Poison("truncated", b"poison-truncated", good[: len(good) // 2], ser, "corrupt UploadEvent body"),
        Poison(
            "fingerprint", b"poison-fingerprint", b"\xc3\x01" + b"\x11" * 8 + good[10:], ser, "unknown schema"
        ),
        Poison(
            "other-schema",
            b"poison-other",
            CODEC.encode("UploadDeleted", _deleted()),
            ser,
            "is a UploadDeleted",
        ),
        Poison("tombstone", b"poison-tombstone", b"", ser, "empty value"),
        item("missing-field", up("missing-field", tenant=""), inv, "missing required field tenant_id"),
        item("no-media", up("no-media", data=None), inv, "missing required field media_url or media_bytes"),
        Poison("enum", b"poison-enum", with_bad_enum(up("enum")), ser, "corrupt UploadEvent body"),
        Poison("null-key", None, encoded(up("null-key")), inv, "has no key"),
        item(
            "over-size",
            upload(TEXT, upload_id="poison-over-size", text="x" * 70_000),
            inv,
            "over the 65536-byte",
        ),
        item("media-type", up("media-type", content_type="application/pdf"), inv, "unsupported media type"),
        item(
            "malformed-url", up("malformed-url", data=None, url="ht!tp://no host"), inv, "malformed media_url"
        ),
        item(
            "content-type-injection",
            up("content-type-injection", content_type="image/png\r\nX-Evil: 1"),
            inv,
            "malformed content_type",
        ),
        item("long-id", upload(TEXT, upload_id="poison-" + "i" * 300, text="x"), inv, "over the 256"),
        item(
            "hash-lie",
            replace(up("hash-lie"), content_sha256="00" * 32),
            inv,
            "is not the SHA-256 of the media bytes",
        ),
        item("tiny", up("tiny", data=image_bytes(make_image(8, (8, 8)))), perm, "too small"),
        item("corrupt", up("corrupt", data=png[:40] + b"\x00" * 200), perm, "3002"),
        item(
            "url-404",
            up("url-404", data=None, url=f"{sim.url}/media/never-hosted.png"),
            None,
            "check_unavailable:csam",
        ),
    ]


def _deleted() -> dict[str, Any]:
    return {"upload_id": "x", "tenant_id": "t", "deleted_at": 0}


async def test_every_kind_of_poison_is_dead_lettered_or_answered_and_the_partition_flows(
    kafka_bootstrap: str,
    make_topics: Callable[..., Any],
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    accounting: Callable[[str], None],
) -> None:
    topics = make_topics(input_partitions=1)  # one partition: poison sits between good uploads
    poison = corpus(sim)
    good = [upload(TEXT, upload_id=f"good-{i}", text=f"hello {i}") for i in range(len(poison) + 1)]
    interleaved: list[tuple[bytes | None, bytes]] = []
    for i, p in enumerate(poison):
        interleaved += [(good[i].upload_id.encode(), encoded(good[i])), (p.key, p.value)]
    interleaved.append((good[-1].upload_id.encode(), encoded(good[-1])))
    produce_uploads(kafka_bootstrap, topics.input, [], raw=interleaved)

    settings = settings_for(
        topics, max_record_bytes=65_536, retry_attempts=2, retry_base_delay_s=0.01, check_deadline_s=10
    )
    expected_letters = [p for p in poison if p.dead_letter]
    answered = {f"poison-{p.kind}" for p in poison if not p.dead_letter}
    async with running_service(settings) as service:
        verdicts = await asyncio.to_thread(
            read_verdicts,
            kafka_bootstrap,
            topics.verdicts,
            {u.upload_id for u in good} | answered,
            timeout=90,
        )
        letters = await asyncio.to_thread(
            read_dead_letters, kafka_bootstrap, topics.dlq, len(expected_letters)
        )
        assert service.watch.alive().ok

    by_id = {v.upload_id: v for v in verdicts}
    assert {u.upload_id for u in good} <= set(by_id), "the partition stopped flowing"
    by_offset = {letter.source_offset: (letter, headers) for letter, headers in letters}
    for i, p in enumerate(poison):
        offset = 2 * i + 1
        if p.dead_letter is None:
            reasons = [r.label for r in by_id[f"poison-{p.kind}"].reasons]
            assert p.says in reasons, (p.kind, reasons)
            continue
        assert offset in by_offset, f"{p.kind}: no dead letter"
        letter, headers = by_offset[offset]
        assert (letter.failure.error_class, p.kind) == (p.dead_letter, p.kind)
        assert p.says in letter.failure.message, (p.kind, letter.failure.message)
        assert (letter.original_key, letter.original_value or b"") == (p.key, p.value), p.kind
        assert letter.source_topic == topics.input and letter.source_partition == 0
        assert headers[HEADERS["source_offset"]] == str(offset).encode()
        assert headers[HEADERS["error_class"]] == p.dead_letter.encode()
        assert int(headers[HEADERS["attempts"]]) >= 1
    accounting(
        f"accounting: uploads={len(good) + len(poison)} verdicts={len(verdicts)} duplicates=0"
        f" dead_letters={len(letters)} missing={len(good) + len(poison) - len(verdicts) - len(letters)}"
        f" poison_kinds={len(poison)}"
    )
    assert len(verdicts) + len(letters) == len(good) + len(poison)
