"""Dead letters (pure): an input record that cannot be moderated, kept whole with its provenance so
``python -m consumer dlq replay`` can re-publish it after a fix.

A dead letter must always be writable, or the record it stands for could neither be answered nor
skipped: ``bounded`` cuts an oversize key or value to fit the producer's and the topic's limits and
puts the original's size and SHA-256 in headers (``dlq.original.<part>.size`` / ``.sha256``); the
headers the letter carries count against the same limit. A record whose headers broke the intake's
caps keeps none of them: their count and size are recorded instead (``consumer.core.headers``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from consumer.core.headers import CUT_COUNT, CUT_SIZE
from consumer.core.records import epoch_millis

__all__ = ["HEADERS", "OVERHEAD_BYTES", "DeadLetter", "Failure"]

# Header names on every dead letter (values UTF-8), so tools can route without decoding the value.
HEADERS = {
    "source_topic": "dlq.source.topic",
    "source_partition": "dlq.source.partition",
    "source_offset": "dlq.source.offset",
    "error_class": "dlq.error.class",
    "error_message": "dlq.error.message",
    "attempts": "dlq.attempts",
}

_MAX_MESSAGE = 1000
_MAX_UPLOAD_ID = 512
_MAX_KAFKA_KEY = 1024
# What a dead letter holds besides the original key and value, at most: provenance, a capped message
# and upload id, their headers, and the record batch's own framing.
OVERHEAD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a record is dead-lettered. ``message`` must never contain secrets."""

    error_class: str
    message: str
    attempts: int = 1
    first_at_ms: int = 0
    last_at_ms: int = 0

    @classmethod
    def of(cls, exc: BaseException, *, attempts: int = 1, first_at_ms: int, last_at_ms: int) -> Failure:
        message = str(exc)[:_MAX_MESSAGE].encode("utf-8", "replace").decode("utf-8")
        return cls(type(exc).__name__, message, attempts, first_at_ms, last_at_ms)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    original_key: bytes | None
    original_value: bytes | None
    source_topic: str
    source_partition: int
    source_offset: int
    failure: Failure
    upload_id: str | None = None
    truncated: dict[str, tuple[int, str]] = field(default_factory=dict)  # part -> (size, sha256)
    headers_cut: tuple[int, int] | None = None  # (count, size) of the input's headers, not kept

    def bounded(self, max_bytes: int, header_bytes: int = 0) -> DeadLetter:
        """This letter with its original key and value cut so the whole fits ``max_bytes``, with
        ``header_bytes`` of the input's headers copied onto it besides its own."""
        room = max(0, max_bytes - OVERHEAD_BYTES - 2 * _MAX_KAFKA_KEY - header_bytes)
        key, value = self.original_key or b"", self.original_value or b""
        if len(key) + len(value) <= room:
            return self
        kept_key = key[: min(len(key), room // 2, _MAX_KAFKA_KEY)]
        kept_value = value[: max(0, room - len(kept_key))]
        truncated = dict(self.truncated)
        for part, whole, kept in (("key", key, kept_key), ("value", value, kept_value)):
            if len(kept) < len(whole):
                truncated[part] = (len(whole), hashlib.sha256(whole).hexdigest())
        return replace(
            self,
            original_key=kept_key if self.original_key is not None else None,
            original_value=kept_value if self.original_value is not None else None,
            truncated=truncated,
        )

    def kafka_key(self) -> bytes | None:
        """The dead letter's own record key: the original key, or its digest when that is long."""
        key = self.original_key
        if key is None or (len(key) <= _MAX_KAFKA_KEY and "key" not in self.truncated):
            return key
        size_and_digest = self.truncated.get("key")
        return (size_and_digest[1] if size_and_digest else hashlib.sha256(key).hexdigest()).encode()

    def to_avro(self) -> dict[str, Any]:
        f = self.failure
        return {
            "original_key": self.original_key,
            "original_value": self.original_value,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "upload_id": None if self.upload_id is None else self.upload_id[:_MAX_UPLOAD_ID],
            "error_class": f.error_class,
            "error_message": f.message[:_MAX_MESSAGE],
            "attempts": f.attempts,
            "first_failure_at": f.first_at_ms,
            "last_failure_at": f.last_at_ms,
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> DeadLetter:
        return cls(
            original_key=d.get("original_key"),
            original_value=d.get("original_value"),
            source_topic=d["source_topic"],
            source_partition=d["source_partition"],
            source_offset=d["source_offset"],
            upload_id=d.get("upload_id"),
            failure=Failure(
                d["error_class"],
                d["error_message"],
                d["attempts"],
                epoch_millis(d["first_failure_at"]),
                epoch_millis(d["last_failure_at"]),
            ),
        )

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        f = self.failure
        values = {
            "source_topic": self.source_topic,
            "source_partition": str(self.source_partition),
            "source_offset": str(self.source_offset),
            "error_class": f.error_class,
            "error_message": f.message[:_MAX_MESSAGE],
            "attempts": str(f.attempts),
        }
        headers: list[tuple[str, str | bytes | None]] = [
            (HEADERS[name], value.encode()) for name, value in values.items()
        ]
        for part, (size, digest) in sorted(self.truncated.items()):
            headers += [(f"dlq.original.{part}.size", str(size).encode())]
            headers += [(f"dlq.original.{part}.sha256", digest.encode())]
        if self.headers_cut is not None:
            headers += [(CUT_COUNT, str(self.headers_cut[0]).encode())]
            headers += [(CUT_SIZE, str(self.headers_cut[1]).encode())]
        return headers
