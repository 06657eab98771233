from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.checks.builtin import default_registry
from consumer.core.records import CsamResult, Decision, SimilarityMatch
from consumer.errors import ConfigError
from consumer.policy.decision import CheckResults, Frame, Policy, decide
from consumer.policy.tenants import load_policies

POLICY = load_policies().default


def visual(**scores: float) -> CheckResults:
    return CheckResults(classifications={"visual": [Frame(0.0, scores)]})


def test_benign_scores_allow() -> None:
    out = decide(POLICY, visual(general_nsfw=0.01, general_not_nsfw_not_suggestive=0.99))
    assert out.decision is Decision.ALLOW and out.reasons == ()


def test_the_summary_leaves_out_only_the_classes_a_provider_marked_benign() -> None:
    """The policy reads no vendor's naming: an unmarked ``no_gun`` is a class like any other."""
    scores = {"no_gun": 0.9, "gun_in_hand": 0.1}
    for benign, listed in (
        (frozenset(), ["no_gun", "gun_in_hand"]),
        (frozenset({"no_gun"}), ["gun_in_hand"]),
    ):
        out = decide(POLICY, CheckResults(classifications={"visual": [Frame(0.0, scores, benign)]}))
        assert out.classification is not None
        assert [c.class_name for c in out.classification.top_classes] == listed


@pytest.mark.parametrize(
    ("score", "decision"),
    [(0.49, Decision.ALLOW), (0.5, Decision.REVIEW), (0.89, Decision.REVIEW), (0.9, Decision.BLOCK)],
)
def test_thresholds_are_inclusive(score: float, decision: Decision) -> None:
    assert decide(POLICY, visual(general_nsfw=score)).decision is decision


def test_csam_match_escalates_above_everything() -> None:
    results = visual(general_nsfw=0.99)
    results.hash_matches["csam"] = CsamResult(matched=True, hash_type="pdq", match_distance=4)
    out = decide(POLICY, results)
    assert out.decision is Decision.ESCALATE
    assert out.reasons[0].label == "hash_match" and out.reasons[0].detail == "pdq"


def test_index_match_blocks_citing_metadata() -> None:
    results = CheckResults(
        similarity={"similarity": [SimilarityMatch("a", 0.8, "weak"), SimilarityMatch("b", 0.95, "case 9")]}
    )
    out = decide(POLICY, results)
    assert out.decision is Decision.BLOCK
    assert (out.reasons[0].label, out.reasons[0].detail, out.reasons[0].score) == (
        "index_match",
        "case 9",
        0.95,
    )


def test_unavailable_check_fails_closed_unless_fail_open() -> None:
    results = CheckResults(unavailable={"visual": "timeout"})
    assert decide(POLICY, results).reasons[0].label == "check_unavailable:visual"
    lenient = POLICY.model_copy(update={"fail_open": frozenset({"visual"})})
    assert decide(lenient, results).decision is Decision.ALLOW


def test_csam_can_never_fail_open(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: x\nfail_open: [csam]\n")
    with pytest.raises(ConfigError, match="policy fail_open: csam can never fail open"):
        load_policies(path, default_registry())


def test_bad_policy_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: x\nclassification:\n  visual:\n    general_nsfw: {review: 0.9, block: 0.5}\n")
    with pytest.raises(ConfigError, match=r"classification\.visual\.general_nsfw: block must be >= review"):
        load_policies(path)


def test_video_frames_give_flagged_ranges() -> None:
    frames = [Frame(float(t), {"general_nsfw": s}) for t, s in enumerate([0.1, 0.7, 0.95, 0.6, 0.1, 0.8])]
    out = decide(POLICY, CheckResults(classifications={"visual": frames}))
    assert out.decision is Decision.BLOCK
    assert out.classification is not None
    spans = [(r.start_seconds, r.end_seconds, r.max_score) for r in out.classification.flagged_ranges]
    assert spans == [(1.0, 4.0, 0.95), (5.0, 6.0, 0.8)]


scores = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(a=scores, b=scores, sim=scores)
def test_decision_is_the_most_severe_reason_and_monotonic(a: float, b: float, sim: float) -> None:
    results = CheckResults(
        classifications={"visual": [Frame(0, {"general_nsfw": a, "gun_in_hand": b})]},
        similarity={"similarity": [SimilarityMatch("m", sim)]},
    )
    out = decide(POLICY, results)
    expected = max(
        (Decision(r_decision(POLICY, r.check, r.label, r.score)) for r in out.reasons),
        key=lambda d: d.severity,
        default=Decision.ALLOW,
    )
    assert out.decision is expected
    higher = CheckResults(
        classifications={"visual": [Frame(0, {"general_nsfw": max(a, 0.95), "gun_in_hand": b})]},
        similarity={"similarity": [SimilarityMatch("m", sim)]},
    )
    assert decide(POLICY, higher).decision.severity >= out.decision.severity


def r_decision(policy: Policy, check: str, label: str, score: float | None) -> str:
    assert score is not None
    t = policy.similarity if check == "similarity" else policy.classification[check][label]
    return "BLOCK" if t.block is not None and score >= t.block else "REVIEW"


SECRET = "hunter2-s3cr3t-value"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"version: x\nclassification: {{visual: {{token: '{SECRET}\n".encode(), "is not valid YAML: "),
        (f"version: x\nfail_open: {SECRET}: x\n".encode(), r"mapping values are not allowed here at line 2"),
        (b"version: x\nnote: " + SECRET.encode() + b"\xff\n", "not UTF-8 text"),
        (
            f"version: x\nsimilarity: {{block: {SECRET}}}\n".encode(),
            r"policy similarity\.block: .*valid number",
        ),
        (f"version: x\n{SECRET}: 1\n".encode(), f"policy {SECRET}: unknown setting"),
    ],
)
def test_policy_errors_never_quote_the_file(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_policies(path)
    message = str(caught.value)
    assert message.startswith("invalid setting policy") and "\n" not in message
    if "unknown setting" not in message:  # an unknown key is named: it is the setting, not a value
        assert SECRET not in message


def test_a_policy_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policy_file: cannot read .*: not a regular file"):
        load_policies(tmp_path)
