"""Record headers (pure): what they weigh in every byte bound, and the intake's caps on them.

A record's headers are its producer's bytes like its key and value: they count in the record's
size (``processing.max_record_bytes``), in the bytes waiting and in flight, and on its dead
letter. A record with more than ``processing.max_header_count`` headers, or more than
``processing.max_header_bytes`` of them, is a dead letter whose headers are cut (none is copied,
not even ``traceparent``); their count and size are recorded on it instead
(``dlq.original.headers.count`` / ``.size``)."""

from __future__ import annotations

from collections.abc import Sequence

from consumer.errors import InvalidRecordError

__all__ = ["CUT_COUNT", "CUT_SIZE", "Header", "check_headers", "measure", "over_caps"]

Header = tuple[str | bytes, bytes | str | None]

# On a dead letter whose input's headers were cut: how many there were, and their size in bytes.
CUT_COUNT = "dlq.original.headers.count"
CUT_SIZE = "dlq.original.headers.size"


def measure(headers: Sequence[Header] | None) -> tuple[int, int]:
    """(count, size) of a record's headers: size is the sum of each name's and value's length in
    bytes (a name in UTF-8; a null value weighs nothing)."""
    if not headers:
        return 0, 0
    size = 0
    for name, value in headers:
        size += len(name) if isinstance(name, bytes) or name.isascii() else _utf8_len(name)
        if value is not None:
            size += len(value) if isinstance(value, bytes) else _utf8_len(value)
    return len(headers), size


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def over_caps(count: int, size: int, max_count: int, max_bytes: int) -> bool:
    """Whether headers of ``count`` and ``size`` break either cap."""
    return count > max_count or size > max_bytes


def check_headers(count: int, size: int, max_count: int, max_bytes: int) -> None:
    """InvalidRecordError (one line, no header quoted) when the headers break either cap."""
    if over_caps(count, size, max_count, max_bytes):
        raise InvalidRecordError(
            f"record headers over the limit: {count} headers of {size} bytes"
            f" (at most {max_count} headers of {max_bytes} bytes); the headers are not kept"
        )
