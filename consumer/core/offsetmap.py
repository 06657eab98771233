"""Pure encoding of out-of-order completions into Kafka commit metadata.

A committed offset says "everything before this is done". Records after it may be done too (a
slow record holds the position back while others finish); without remembering them, a restart
or rebalance would process them again. They are stored in the commit's metadata string as
run lengths relative to the committed offset, alternating not-done / done and starting with
not-done (the committed offset itself is never done), as unsigned LEB128 varints in base64url:

    committed 100, done beyond it {102, 103, 107}  ⇒  runs [2, 2, 3, 1]  ⇒  "m1:AgIDAQ"

The broker keeps at most ``offset.metadata.max.bytes`` (4096 by default) per partition; a map
that would not fit is cut at the far end, and ``encode`` reports how far it reaches so the caller
can narrow its out-of-order window instead of stalling.

The metadata is read back from the broker, and any client that can commit for the group can
write it: it is outside input. ``decode_runs`` costs time and memory in proportion to the
metadata's bytes, never to the range it claims (a forged ``m1:`` claiming 2^62 finished offsets is
two intervals, not a set being filled while the event loop waits); metadata longer than
``MAX_READ_BYTES``, a varint past 63 bits, a claim on the committed offset itself or a truncated
varint make it foreign: ignored, so the work beyond the commit is done again (at least once).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

__all__ = ["MAX_METADATA_BYTES", "MAX_READ_BYTES", "PREFIX", "Interval", "decode", "decode_runs", "encode"]

PREFIX = "m1:"
MAX_METADATA_BYTES = 4000  # below the broker's default 4096, leaving room for other clients' needs
MAX_READ_BYTES = 64 << 10  # longer metadata is not ours (a broker may allow more than we ever write)
_MAX_VARINT_BITS = 63  # Kafka offsets are signed 64-bit
Interval = tuple[int, int]  # [start, end): finished offsets


def _varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode(
    base: int, done: Iterable[int], limit: int = MAX_METADATA_BYTES, intervals: Iterable[Interval] = ()
) -> tuple[str, int | None]:
    """Metadata for completions beyond ``base`` (the committed offset): the offsets ``done`` and the
    ``intervals`` (``[start, end)``, as ``decode_runs`` gives them), and the last offset the
    metadata still covers (None when everything fit). Offsets ≤ ``base`` are ignored."""
    spans = _merged(base, done, intervals)
    if not spans:
        return "", None
    runs: list[int] = []
    cursor = base
    for start, end in spans:
        runs += [start - cursor, end - start]
        cursor = end
    budget = (limit - len(PREFIX)) * 3 // 4  # base64 expands 3 bytes to 4 characters
    raw = bytearray()
    covered = base
    cut: int | None = None
    for k in range(0, len(runs), 2):
        pair = bytearray()
        _varint(runs[k], pair)
        _varint(runs[k + 1], pair)
        if len(raw) + len(pair) > budget:
            cut = covered
            break
        raw += pair
        covered += runs[k] + runs[k + 1]
    text = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return (PREFIX + text if raw else ""), cut


def _merged(base: int, done: Iterable[int], intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-adjacent ``[start, end)`` spans of what lies beyond ``base``."""
    spans = [(o, o + 1) for o in set(done) if o > base]
    spans += [(max(start, base + 1), end) for start, end in intervals if end > base + 1 and end > start]
    spans.sort()
    merged: list[Interval] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def decode_runs(base: int, metadata: str | None) -> list[Interval]:
    """The ``[start, end)`` intervals beyond ``base`` that a previous owner finished, ascending;
    empty for foreign or malformed metadata. Costs O(len(metadata)) whatever range it claims."""
    if not metadata or not metadata.startswith(PREFIX) or len(metadata) > MAX_READ_BYTES:
        return []
    text = metadata[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return []
    runs: list[int] = []
    n = shift = 0
    for byte in raw:
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > _MAX_VARINT_BITS + 7 or n >> _MAX_VARINT_BITS:
            return []  # no offset is that far: not ours
        if not byte & 0x80:
            runs.append(n)
            n = shift = 0
    if shift or (runs and runs[0] == 0):  # a truncated varint; a claim on the committed offset itself
        return []
    found: list[Interval] = []
    cursor = base
    for k in range(0, len(runs) - 1, 2):
        cursor += runs[k]
        if runs[k + 1]:
            found.append((cursor, cursor + runs[k + 1]))
        cursor += runs[k + 1]
    return found


def decode(base: int, metadata: str | None, limit: int = 1 << 20) -> set[int]:
    """The offsets beyond ``base`` that a previous owner finished, as a set (for tests and tools);
    empty for foreign metadata, ValueError when it claims more than ``limit`` offsets."""
    runs = decode_runs(base, metadata)
    if sum(end - start for start, end in runs) > limit:
        raise ValueError(f"commit metadata claims more than {limit} finished offsets")
    return {o for start, end in runs for o in range(start, end)}
