"""Index metadata: what a similarity match carries back from the provider's index (any writer of the
shared index writes it), parsed strictly to the entry's owning tenant and note; and the encoding of
our own entries, which must parse back to exactly what was encoded. The first input byte splits
the rest into a tenant and a note for the encoding half. Documented error: ``ValueError`` from
``encode`` for a tenant outside the grammar; ``parse`` raises nothing."""

from __future__ import annotations

from consumer.core.index_metadata import IndexEntryMeta, encode, own_matches, owned_by, parse
from consumer.core.records import SimilarityMatch

__all__ = ["test_one_input"]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    text = data[1:].decode("utf-8", "replace")
    meta = parse(text)  # as it comes back in a match
    if meta is not None:
        assert parse(encode(meta.tenant, meta.note)) == meta
        assert owned_by(text, meta.tenant) == meta
        assert owned_by(text, meta.tenant + "x") is None
    found = [SimilarityMatch("m1", 0.99, text), SimilarityMatch("m2", 0.9, None)]
    for match in own_matches(found, "acme"):
        assert meta is not None and meta.tenant == "acme" and match.metadata == meta.note
    cut = data[0] % (len(text) + 1)
    tenant, note = text[:cut], text[cut:]
    try:
        encoded = encode(tenant, note)
    except ValueError:
        return
    back = parse(encoded)
    assert back is not None and back.tenant == tenant and note.startswith(back.note), (tenant, note)
    assert back == IndexEntryMeta(tenant, back.note)
