"""Index metadata is structured, escaped and parsed strictly; a match counts only for its own tenant;
tenant ids have a grammar (``consumer.core.index_metadata``, ``consumer.core.validation``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core import index_metadata
from consumer.core.records import Decision, ReviewDecision, SimilarityMatch
from consumer.core.validation import MAX_NOTE_LENGTH, TENANT_ID, check_tenant_id, validate_review
from consumer.errors import ConfigError, InvalidRecordError
from consumer.policy.tenants import load_policies

tenants = st.from_regex(TENANT_ID, fullmatch=True)


@given(tenants, st.text(max_size=MAX_NOTE_LENGTH))
def test_encode_then_parse_is_the_identity(tenant: str, note: str) -> None:
    meta = index_metadata.parse(index_metadata.encode(tenant, note))
    assert meta is not None and (meta.tenant, meta.note) == (tenant, note)


@given(tenants, tenants, st.text(max_size=200))
def test_a_note_never_changes_the_owner(tenant: str, other: str, note: str) -> None:
    """Whatever the note holds (separators, quotes, JSON), the entry belongs to its tenant alone."""
    stored = index_metadata.encode(tenant, note)
    assert (index_metadata.owned_by(stored, other) is not None) == (tenant == other)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        "",
        "tenant=victim;attacker note",  # the old, ambiguous format
        "untagged",
        '{"v":1,"tenant":"victim"}',
        '{"v":1,"tenant":"victim","note":"x","extra":1}',
        '{"v":2,"tenant":"victim","note":"x"}',
        '{"v":1,"tenant":"victim;x","note":"x"}',
        '{"v":1,"tenant":["victim"],"note":"x"}',
        '{"v":1,"tenant":"victim","note":7}',
        '{"v":1,"tenant":"victim","note":"' + "x" * (MAX_NOTE_LENGTH + 1) + '"}',
        '["victim"]',
        "{" * 5000,
        '{"v":1,"tenant":"victim","note":"x"} trailing',
        42,
    ],
)
def test_parse_is_strict(metadata: object) -> None:
    assert index_metadata.parse(metadata) is None
    assert index_metadata.owned_by(metadata, "victim") is None


def test_own_matches_keeps_the_tenants_own_entries_with_their_notes() -> None:
    found = [
        SimilarityMatch("1", 0.9, index_metadata.encode("victim", "banned")),
        SimilarityMatch("2", 0.9, index_metadata.encode("attacker", "x")),
        SimilarityMatch("3", 0.9, "tenant=victim;forged"),
        SimilarityMatch("4", 0.9, None),
    ]
    assert index_metadata.own_matches(found, "victim") == [SimilarityMatch("1", 0.9, "banned")]


def test_encode_refuses_a_tenant_outside_the_grammar() -> None:
    with pytest.raises(ValueError, match="grammar"):
        index_metadata.encode("victim;attacker", "x")


@pytest.mark.parametrize(
    "tenant", ["", "victim;attacker", "a b", "-lead", ".x", "x" * 129, "tenant\x00", "ténant", "a/b", "a=b"]
)
def test_tenant_ids_outside_the_grammar_are_refused(tenant: str) -> None:
    with pytest.raises(InvalidRecordError, match="tenant_id"):
        check_tenant_id(tenant)


@pytest.mark.parametrize("tenant", ["acme", "tenant-a", "T_1.eu", "0", "x" * 128])
def test_tenant_ids_in_the_grammar_pass(tenant: str) -> None:
    check_tenant_id(tenant)


def _review(**changes: object) -> ReviewDecision:
    fields: dict[str, object] = {
        "review_id": "rv-1",
        "upload_id": "up-1",
        "tenant_id": "victim",
        "decision": Decision.BLOCK,
        "decided_at": 1,
        "media_bytes": b"png",
    }
    fields.update(changes)
    return ReviewDecision(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenant_id": "victim;attacker"}, "tenant_id"),
        ({"review_id": " "}, "review_id"),
        ({"upload_id": "u" * 300}, "upload_id"),
        ({"note": "n" * (MAX_NOTE_LENGTH + 1)}, "note"),
        ({"reviewer": "r" * (MAX_NOTE_LENGTH + 1)}, "reviewer"),
        ({"media_bytes": b"x" * 2000}, "inline media"),
        ({"media_bytes": None, "media_url": "file:///etc/passwd"}, "media_url"),
    ],
)
def test_review_decisions_are_validated_like_uploads(changes: dict[str, object], message: str) -> None:
    validate_review(_review(), inline_limit=1000)
    with pytest.raises(InvalidRecordError, match=message):
        validate_review(_review(**changes), inline_limit=1000)


@pytest.mark.parametrize("tenant", ["victim;attacker", "a b", "-x", "x" * 129])
def test_a_policy_tenant_outside_the_grammar_is_refused(tenant: str, tmp_path: Path) -> None:
    """No upload could carry it: an override for it would silently never apply."""
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps({"version": "t", "tenants": {tenant: {}}}))
    with pytest.raises(ConfigError, match="tenant-id grammar"):
        load_policies(path)
