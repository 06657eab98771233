"""Dead letters (pure): an input record that cannot be moderated, kept whole with its provenance so
``python -m consumer dlq replay`` can re-publish it after a fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HEADERS", "DeadLetter", "Failure"]

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
        return cls(type(exc).__name__, str(exc), attempts, first_at_ms, last_at_ms)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    original_key: bytes | None
    original_value: bytes | None
    source_topic: str
    source_partition: int
    source_offset: int
    failure: Failure
    upload_id: str | None = None

    def to_avro(self) -> dict[str, Any]:
        f = self.failure
        return {
            "original_key": self.original_key,
            "original_value": self.original_value,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "upload_id": self.upload_id,
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
                _millis(d["first_failure_at"]),
                _millis(d["last_failure_at"]),
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
        return [(HEADERS[name], value.encode()) for name, value in values.items()]


def _millis(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)  # fastavro reads timestamp-millis as datetime
