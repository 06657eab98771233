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
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

__all__ = ["MAX_METADATA_BYTES", "PREFIX", "decode", "encode"]

PREFIX = "m1:"
MAX_METADATA_BYTES = 4000  # below the broker's default 4096, leaving room for other clients' needs


def _varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode(base: int, done: Iterable[int], limit: int = MAX_METADATA_BYTES) -> tuple[str, int | None]:
    """Metadata for completions beyond ``base`` (the committed offset), and the last offset the
    metadata still covers (None when everything fit). Offsets ≤ ``base`` are ignored."""
    ahead = sorted(o for o in set(done) if o > base)
    if not ahead:
        return "", None
    runs: list[int] = []
    cursor = base
    i = 0
    while i < len(ahead):
        start = ahead[i]
        j = i
        while j + 1 < len(ahead) and ahead[j + 1] == ahead[j] + 1:
            j += 1
        runs += [start - cursor, j - i + 1]
        cursor = ahead[j] + 1
        i = j + 1
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


def decode(base: int, metadata: str | None) -> set[int]:
    """The offsets beyond ``base`` that a previous owner finished; empty for foreign metadata."""
    if not metadata or not metadata.startswith(PREFIX):
        return set()
    text = metadata[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return set()
    runs: list[int] = []
    n = shift = 0
    for byte in raw:
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            runs.append(n)
            n = shift = 0
    done: set[int] = set()
    cursor = base
    for k in range(0, len(runs) - 1, 2):
        cursor += runs[k]
        done.update(range(cursor, cursor + runs[k + 1]))
        cursor += runs[k + 1]
    return done
