"""What we store with an entry of the similarity index (pure): the tenant that owns it and a note.

The index is shared by every tenant (Hive's custom index has no tenant scoping; Huawei's tags are
the caller's strings), so a match counts for an upload only when its stored tenant equals the
upload's exactly. The metadata is a JSON object ``{"v": 1, "tenant": ..., "note": ...}``: encoded by
a JSON library (escaped, unambiguous whatever the note holds) and parsed strictly: anything else,
including an entry written before this format or by a tool outside the service, belongs to no
tenant and matches nobody.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import orjson

from consumer.core.records import SimilarityMatch
from consumer.core.validation import MAX_NOTE_LENGTH, TENANT_ID

__all__ = ["MAX_METADATA_LENGTH", "IndexEntryMeta", "encode", "own_matches", "owned_by", "parse"]

_VERSION = 1
MAX_METADATA_LENGTH = 4 * MAX_NOTE_LENGTH  # a note of MAX_NOTE_LENGTH characters, escaped, and the rest
_KEYS = frozenset({"v", "tenant", "note"})


@dataclass(frozen=True, slots=True)
class IndexEntryMeta:
    tenant: str
    note: str


def encode(tenant: str, note: str) -> str:
    """The metadata string for ``tenant``'s entry; ValueError for a tenant outside the grammar."""
    if TENANT_ID.fullmatch(tenant) is None:
        raise ValueError("tenant id outside the tenant-id grammar")
    return orjson.dumps({"v": _VERSION, "tenant": tenant, "note": note[:MAX_NOTE_LENGTH]}).decode()


def parse(metadata: object) -> IndexEntryMeta | None:
    """The owner and note of an entry, or None for anything not written by ``encode``."""
    if not isinstance(metadata, str) or len(metadata) > MAX_METADATA_LENGTH or not metadata.startswith("{"):
        return None
    try:
        value = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.keys() != _KEYS or value["v"] != _VERSION:
        return None
    tenant, note = value["tenant"], value["note"]
    if not isinstance(tenant, str) or TENANT_ID.fullmatch(tenant) is None:
        return None
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        return None
    return IndexEntryMeta(tenant, note)


def owned_by(metadata: object, tenant: str) -> IndexEntryMeta | None:
    """The entry's parsed metadata when ``tenant`` owns it exactly, else None."""
    meta = parse(metadata)
    return meta if meta is not None and meta.tenant == tenant else None


def own_matches(found: Iterable[SimilarityMatch], tenant: str) -> list[SimilarityMatch]:
    """The matches ``tenant`` owns, each with its note as metadata; every other one is dropped."""
    owned = []
    for match in found:
        meta = owned_by(match.metadata, tenant)
        if meta is not None:
            owned.append(replace(match, metadata=meta.note))
    return owned
