"""Per-tenant policies: inheritance, validation (``policy check``), the decision function's
properties, evidence that decides again exactly, shadow comparison and backtests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consumer.checks.builtin import default_registry
from consumer.core.records import CheckRun, CsamResult, Decision, ModerationVerdict, SimilarityMatch
from consumer.errors import ConfigError
from consumer.policy.backtest import Backtest
from consumer.policy.decision import CheckResults, Frame, Policy, decide
from consumer.policy.evidence import RECORDED_FLOOR, evidence_of, missing_scores, results_of, verdict_of
from consumer.policy.shadow import Shadow, ShadowDecision
from consumer.policy.tenants import PolicySet, PolicyStore, load_policies, parse_policies

REGISTRY = default_registry()
SIMILARITY = frozenset({"similarity"})
BASE: dict[str, Any] = {
    "version": "v1",
    "classification": {
        "visual": {"general_nsfw": {"review": 0.5, "block": 0.9}, "yes_drugs": {"review": 0.8}},
        "text": {"sexual": {"review": 0.5, "block": 0.9}},
    },
    "similarity": {"review": 0.85, "block": 0.9},
}


def policies(**tenants: Any) -> PolicySet:
    return parse_policies({**BASE, "tenants": tenants}, REGISTRY)


def visual(**scores: float) -> CheckResults:
    return CheckResults(classifications={"visual": [Frame(0.0, scores)]})


def verdict_for(
    policy: Policy, results: CheckResults, tenant: str = "t", floor: float = RECORDED_FLOOR
) -> ModerationVerdict:
    return verdict_of(
        policy,
        results,
        upload_id="u",
        tenant_id=tenant,
        source_topic="uploads",
        source_partition=0,
        source_offset=0,
        processed_at=0,
        evidence=evidence_of(results, floor),
    )


# --- inheritance -----------------------------------------------------------------------------------


def test_an_override_changes_only_what_it_names() -> None:
    found = policies(acme={"classification": {"visual": {"general_nsfw": {"block": 0.8}}}})
    acme = found.for_tenant("acme")
    assert acme.classification["visual"]["general_nsfw"].review == 0.5  # inherited
    assert acme.classification["visual"]["general_nsfw"].block == 0.8
    assert acme.classification["visual"]["yes_drugs"].review == 0.8
    assert acme.classification["text"] == found.default.classification["text"]
    assert found.for_tenant("other") is found.default
    assert acme.version == found.default.version and acme.digest != found.default.digest


def test_null_removes_a_class_and_lists_replace() -> None:
    found = policies(
        acme={
            "classification": {"visual": {"yes_drugs": None}},
            "fail_open": ["similarity"],
            "checks": ["csam", "visual"],
            "similarity": {"block": None},
        }
    )
    acme = found.for_tenant("acme")
    assert "yes_drugs" not in acme.classification["visual"]
    assert acme.fail_open == {"similarity"} and acme.checks == {"csam", "visual"}
    assert acme.similarity.block is None and acme.similarity.review == 0.85


def test_an_empty_override_is_the_default_with_its_own_entry() -> None:
    found = policies(acme=None)
    assert found.for_tenant("acme").digest == found.default.digest


def test_the_shipped_policy_passes_its_own_check() -> None:
    shipped = load_policies(None, REGISTRY)
    assert shipped.tenants == {} and shipped.version.startswith("default-")


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        (
            {"acme": {"classification": {"visual": {"general_nsfw": {"review": 0.95}}}}},
            r"policy tenants\.acme\.classification\.visual\.general_nsfw: block must be >= review",
        ),
        ({"acme": {"fail_open": ["csam"]}}, r"policy tenants\.acme\.fail_open: csam can never fail open"),
        ({"acme": {"checks": ["visual"]}}, r"policy tenants\.acme\.checks: csam always runs"),
        ({"acme": {"checks": ["csam", "vsual"]}}, r"tenants\.acme\.checks: no check named 'vsual'"),
        (
            {"acme": {"classification": {"visual": {"nudity": {"review": 0.5}}}}},
            r"tenants\.acme\.classification\.visual\.nudity: visual has no such class",
        ),
        (
            {"acme": {"classification": {"similarity": {"x": {"review": 0.5}}}}},
            r"classification\.similarity: similarity has no classes",
        ),
        ({"acme": {"thresholds": {}}}, r"policy tenants\.acme\.thresholds: unknown setting"),
        ({"acme": {"tenants": {}}}, r"policy tenants\.acme\.tenants: overrides do not nest"),
        ({"acme": [1]}, r"policy tenants\.acme: expected a mapping"),
        ({7: {}}, r"policy tenants: tenant id int is outside the tenant-id grammar"),
    ],
)
def test_a_bad_override_is_refused_naming_the_setting(tenants: dict[Any, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policies({**BASE, "tenants": tenants}, REGISTRY)


def test_review_above_block_and_escalate_below_block_are_refused() -> None:
    with pytest.raises(ConfigError, match="escalate must be >= block"):
        parse_policies(
            {"version": "x", "classification": {"csam": {"csam": {"block": 0.9, "escalate": 0.5}}}}
        )
    with pytest.raises(ConfigError, match=r"similarity: block must be >= review"):
        parse_policies({"version": "x", "similarity": {"review": 0.9, "block": 0.5}})


def test_a_tenant_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: x\ntenants:\n  acme: {}\n  beta: {}\n  acme: {fail_open: [visual]}\n")
    with pytest.raises(ConfigError, match="found duplicate key at line 5"):
        load_policies(path, REGISTRY)


# --- the decision function ------------------------------------------------------------------------------

score = st.floats(min_value=0, max_value=1, allow_nan=False)
threshold = st.one_of(st.none(), score)
classes = st.sampled_from(["general_nsfw", "yes_drugs", "gun_in_hand", "very_bloody"])


@st.composite
def thresholds(draw: st.DrawFn) -> dict[str, float | None]:
    review, block = draw(threshold), draw(threshold)
    if review is not None and block is not None and block < review:
        review, block = block, review
    return {"review": review, "block": block}


@st.composite
def scored(draw: st.DrawFn) -> CheckResults:
    frames = draw(st.dictionaries(classes, score, min_size=1))
    results = visual(**frames)
    if draw(st.booleans()):
        results.similarity["similarity"] = [SimilarityMatch("m", draw(score), "case")]
    if draw(st.booleans()):
        results.unavailable["visual"] = "timeout"
    return results


@settings(max_examples=200, deadline=None)
@given(override=st.dictionaries(classes, thresholds(), min_size=1), fail_open=st.booleans(), results=scored())
def test_a_tenant_override_never_changes_another_tenants_decisions(
    override: dict[str, dict[str, float | None]], fail_open: bool, results: CheckResults
) -> None:
    plain = policies()
    changed = policies(
        acme={"classification": {"visual": override}, "fail_open": ["visual"] if fail_open else []}
    )
    for tenant in ("beta", "gamma"):
        before = decide(plain.for_tenant(tenant), results)
        after = decide(changed.for_tenant(tenant), results)
        assert (after.decision, after.reasons) == (before.decision, before.reasons)


@settings(max_examples=300, deadline=None)
@given(cls=classes, base=thresholds(), raise_by=st.floats(min_value=0, max_value=1), results=scored())
def test_raising_a_block_threshold_never_turns_allow_into_block(
    cls: str, base: dict[str, float | None], raise_by: float, results: CheckResults
) -> None:
    assume(base["block"] is not None)
    assert base["block"] is not None
    low = policies(acme={"classification": {"visual": {cls: base}}}).for_tenant("acme")
    raised = {**base, "block": min(1.0, base["block"] + raise_by)}
    high = policies(acme={"classification": {"visual": {cls: raised}}}).for_tenant("acme")
    before, after = decide(low, results).decision, decide(high, results).decision
    assert after.severity <= before.severity
    assert not (before is Decision.ALLOW and after is Decision.BLOCK)


# --- evidence: deciding again from a verdict ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(results=scored(), candidate=st.dictionaries(classes, thresholds(), min_size=1), csam=st.booleans())
def test_a_verdicts_evidence_decides_as_the_check_results_do(
    results: CheckResults, candidate: dict[str, dict[str, float | None]], csam: bool
) -> None:
    results.hash_matches["csam"] = CsamResult(matched=csam, hash_type="pdq" if csam else None)
    live = policies().default
    verdict = verdict_for(live, results)
    other = policies(acme={"classification": {"visual": candidate}}).for_tenant("acme")
    for policy in (live, other):
        missing = missing_scores(policy, verdict, SIMILARITY)
        if missing:  # a threshold under the floor, for a class that scored under it
            assert all("below" in m for m in missing)
            continue
        again = decide(policy, results_of(verdict, SIMILARITY, policy.checks))
        assert again.decision is decide(policy, results).decision


def test_a_verdict_without_evidence_says_what_is_missing() -> None:
    verdict = verdict_for(policies().default, visual(general_nsfw=0.7))
    fields = {f: getattr(verdict, f) for f in verdict.__slots__}
    old = ModerationVerdict(**{**fields, "evidence": (), "checks": (CheckRun("visual", "hive", 1.0, "ok"),)})
    assert missing_scores(policies().default, old, SIMILARITY) == [
        "visual: not recorded (verdict written before schema version 3)"
    ]
    assert (
        missing_scores(policies().default, ModerationVerdict(**{**fields, "evidence": ()}), SIMILARITY) == []
    )


def test_a_check_the_live_policy_skipped_is_missing_for_a_candidate_that_runs_it() -> None:
    results = visual(general_nsfw=0.7)
    verdict = verdict_for(policies().default, results)
    skipped = ModerationVerdict(
        **{
            **{f: getattr(verdict, f) for f in verdict.__slots__},
            "evidence": evidence_of(results, 0.01, ["text"]),
        }
    )
    assert missing_scores(policies().default, skipped, SIMILARITY) == [
        "text: did not run for this upload (its tenant's policy skipped it)"
    ]
    narrow = policies(acme={"checks": ["csam", "visual"]}).for_tenant("acme")
    assert missing_scores(narrow, skipped, SIMILARITY) == []


def test_a_candidate_reading_below_the_floor_is_told_so() -> None:
    verdict = verdict_for(policies().default, visual(general_nsfw=0.003, yes_drugs=0.2))
    low = policies(acme={"classification": {"visual": {"general_nsfw": {"review": 0.002}}}}).for_tenant(
        "acme"
    )
    assert missing_scores(low, verdict, SIMILARITY) == [
        "visual.general_nsfw: scores below 0.01 were not recorded"
    ]


# --- shadow and backtest ----------------------------------------------------------------------------------


def test_the_shadow_record_joins_the_live_verdict_and_the_shadow_one() -> None:
    """Both verdicts come from ``verdict_of``: the record takes the upload and its source from the
    live one and the decision, reasons and policy from the shadow's."""
    results = CheckResults(classifications={"visual": [Frame(0.0, {"general_nsfw": 0.95})]})
    live = replace(verdict_for(policies().default, results), source_offset=7, processed_at=1234)
    strict = parse_policies(
        {"version": "strict", "classification": {"visual": {"general_nsfw": {"escalate": 0.9}}}}, REGISTRY
    )
    shadow = verdict_for(strict.default, results)
    record = ShadowDecision.between(live, shadow, "trace-1")
    assert (record.upload_id, record.verdict_id, record.source_offset, record.decided_at) == (
        live.upload_id,
        live.verdict_id,
        7,
        1234,
    )
    assert (record.live_decision, record.shadow_decision) == (live.decision, Decision.ESCALATE)
    assert (record.shadow_policy_version, record.shadow_policy_digest) == ("strict", strict.default.digest)
    assert record.shadow_reasons == shadow.reasons and record.trace_id == "trace-1"


def test_the_shadow_reports_only_disagreements() -> None:
    live = policies()
    candidate = policies(acme={"classification": {"visual": {"general_nsfw": {"block": 0.6}}}})
    shadow = Shadow(PolicyStore(live, candidate), SIMILARITY)
    results = visual(general_nsfw=0.7)
    assert shadow.compare(verdict_for(live.for_tenant("beta"), results, "beta")) is None
    found = shadow.compare(verdict_for(live.for_tenant("acme"), results, "acme"), "trace")
    assert found is not None
    assert (found.live_decision, found.shadow_decision) == (Decision.REVIEW, Decision.BLOCK)
    assert found.shadow_policy_digest == candidate.for_tenant("acme").digest
    assert found.to_avro()["shadow_reasons"][0]["label"] == "general_nsfw"
    assert Shadow(PolicyStore(live), SIMILARITY).compare(verdict_for(live.default, results)) is None


def test_the_backtest_matrix_counts_transitions_and_lists_weakened_blocks() -> None:
    live = policies().default
    candidate = policies(
        acme={"classification": {"visual": {"general_nsfw": {"review": 0.5, "block": 0.97}}}},
    )
    test = Backtest(candidate, SIMILARITY, examples_per_cell=1)
    for tenant, nsfw in [("acme", 0.95), ("acme", 0.2), ("beta", 0.95), ("acme", 0.96)]:
        test.add(verdict_for(live, visual(general_nsfw=nsfw), tenant))
    assert test.matrix == {
        (Decision.BLOCK, Decision.REVIEW): 2,
        (Decision.ALLOW, Decision.ALLOW): 1,
        (Decision.BLOCK, Decision.BLOCK): 1,
    }
    assert (
        test.changed == 2
        and test.weakened_count == 2
        and len(test.examples[(Decision.BLOCK, Decision.REVIEW)]) == 1
    )
    doc = test.to_json()
    assert doc["matrix"]["BLOCK"]["REVIEW"] == 2 and doc["weakened"]["count"] == 2
    assert "weakened BLOCK or ESCALATE: 2" in test.table()


def test_the_policy_file_round_trips_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**BASE, "tenants": {"acme": {"checks": ["csam", "visual"]}}}))
    assert load_policies(path, REGISTRY).digest == policies(acme={"checks": ["csam", "visual"]}).digest


def test_the_docs_policy_example_passes_the_check() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    start = page.index("```yaml", page.index("## Per-tenant policies")) + len("```yaml")
    found = parse_policies(yaml.safe_load(page[start : page.index("```", start)]), REGISTRY)
    assert set(found.tenants) == {"kids-app", "stock-photos"}
    assert found.for_tenant("kids-app").classification["visual"]["general_nsfw"].review == 0.5


def test_a_file_of_verdicts_is_checked_against_the_schema(tmp_path: Path) -> None:
    import json

    from consumer.policy.backtest import MAX_LINE_BYTES, read_verdict_file

    record = verdict_for(policies().default, visual(general_nsfw=0.7)).to_avro()
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(record) + "\n\n")
    assert [v.decision for v in read_verdict_file(good)] == [Decision.REVIEW]
    record["evidence"][0]["scores"]["general_nsfw"] = "high"  # a wrong type would crash the decision
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match="line 1 is not a verdict"):
        list(read_verdict_file(wrong))
    giant = tmp_path / "giant.jsonl"
    giant.write_bytes(b"[" + b" " * MAX_LINE_BYTES + b"]\n")
    with pytest.raises(ConfigError, match="line 1 is longer than"):
        list(read_verdict_file(giant))
