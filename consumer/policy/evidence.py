"""A verdict's evidence: what each check found, in the form the policy reads (peak class scores,
the best similarity score, hash matches, which checks failed), recorded on every verdict so the
decision can be taken again with other rules, by a shadow policy or a backtest, without asking any
provider. Pure: no I/O.

Classes scoring below the entry's ``score_floor`` are left out (a provider returns every class of
every head, most near 0). A rule whose lowest threshold is at or above the floor is decided exactly;
one below it needs a score that was not recorded, and ``missing_scores`` says so.

``verdict_of`` assembles the decision record itself, once: the pipeline's verdicts and the shadow
policy's are built by it alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from consumer.core.records import (
    CheckEvidence,
    CheckRun,
    CsamResult,
    ModerationVerdict,
    SimilarityMatch,
    verdict_id,
)
from consumer.policy.decision import CheckResults, Frame, Policy, decide, peaks

__all__ = [
    "INDEX_MATCH",
    "MAX_LISTED",
    "RECORDED_FLOOR",
    "evidence_of",
    "missing_scores",
    "results_of",
    "verdict_of",
]

RECORDED_FLOOR = 0.01  # classes scoring less are not recorded (unless a policy reads lower)
INDEX_MATCH = "index_match"  # a similarity check's one score: its best match's
SCORED, UNAVAILABLE, REJECTED, SKIPPED = "scored", "unavailable", "rejected", "skipped"
MAX_LISTED = 100  # scenes, flagged ranges, matches on one verdict: a provider's flood stays off it


def verdict_of(
    policy: Policy,
    results: CheckResults,
    *,
    upload_id: str,
    tenant_id: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    processed_at: int,
    checks: tuple[CheckRun, ...] = (),
    evidence: tuple[CheckEvidence, ...] = (),
) -> ModerationVerdict:
    """What ``policy`` decides from ``results``, as the record of the decision: the upload and its
    source, the decision and its reasons, the policy's version and digest, and what the checks found
    (at most ``MAX_LISTED`` of each list); ``checks`` and ``evidence`` as the caller recorded them."""
    outcome = decide(policy, results)
    summary = outcome.classification
    csam = next(iter(results.hash_matches.values()), None)
    if csam is not None and len(csam.scenes) > MAX_LISTED:
        csam = replace(csam, scenes=csam.scenes[:MAX_LISTED])
    if summary is not None and len(summary.flagged_ranges) > MAX_LISTED:
        summary = replace(summary, flagged_ranges=summary.flagged_ranges[:MAX_LISTED])
    found = [m for matches in results.similarity.values() for m in matches]
    matches = sorted(found, key=lambda m: m.score, reverse=True)[:MAX_LISTED]
    return ModerationVerdict(
        verdict_id=verdict_id(upload_id, policy.version),
        upload_id=upload_id,
        tenant_id=tenant_id,
        decision=outcome.decision,
        reasons=outcome.reasons,
        policy_version=policy.version,
        policy_digest=policy.digest,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        processed_at=processed_at,
        csam=csam,
        classification=summary,
        similarity=tuple(matches),
        checks=checks,
        evidence=evidence,
    )


def evidence_of(
    results: CheckResults, floor: float, skipped: Iterable[str] = ()
) -> tuple[CheckEvidence, ...]:
    """The evidence of ``results``; ``skipped``: checks that apply to the upload but its tenant's
    policy does not run."""
    scored: dict[str, CheckEvidence] = {}
    for check, match in results.hash_matches.items():
        detail = match.hash_type if match.matched else None
        scored[check] = CheckEvidence(check, SCORED, {}, floor, match.matched, detail)
    for check, frames in results.classifications.items():
        found = {name: score for name, score in peaks(frames).items() if score >= floor}
        hashed = scored.get(check)
        hash_match, detail = (hashed.hash_match, hashed.detail) if hashed is not None else (None, None)
        scored[check] = CheckEvidence(check, SCORED, found, floor, hash_match, detail)
    for check, matches in results.similarity.items():
        best = max(matches, key=lambda m: m.score, default=None)
        if best is None:
            scored[check] = CheckEvidence(check, SCORED, {}, 0.0)
        else:
            detail = best.metadata or best.match_id
            scored[check] = CheckEvidence(check, SCORED, {INDEX_MATCH: best.score}, 0.0, None, detail)
    failed = [CheckEvidence(c, UNAVAILABLE, detail=why) for c, why in results.unavailable.items()]
    failed += [CheckEvidence(c, REJECTED, detail=why) for c, why in results.rejected.items()]
    return (*scored.values(), *failed, *(CheckEvidence(c, SKIPPED) for c in skipped))


def results_of(
    verdict: ModerationVerdict, similarity_checks: frozenset[str], runs: frozenset[str] | None = None
) -> CheckResults:
    """Check results that ``decide`` treats as the recorded ones: the same decision for any policy
    ``missing_scores`` finds nothing missing for. ``runs``: the checks the deciding policy runs
    (None: all); the others' findings are left out, as if they had not run."""
    results = CheckResults()
    for e in verdict.evidence:
        if runs is not None and e.check not in runs:
            continue
        if e.status == UNAVAILABLE:
            results.unavailable[e.check] = e.detail or ""
        elif e.status == REJECTED:
            results.rejected[e.check] = e.detail or ""
        elif e.status == SCORED:
            if e.check in similarity_checks:
                score = e.scores.get(INDEX_MATCH)
                found = [] if score is None else [SimilarityMatch(e.detail or "", score, e.detail)]
                results.similarity[e.check] = found
                continue
            if e.hash_match is not None:
                csam = (
                    verdict.csam
                    if verdict.csam is not None and verdict.csam.matched == e.hash_match
                    else None
                )
                results.hash_matches[e.check] = csam or CsamResult(e.hash_match, e.detail)
            if e.scores or e.hash_match is None:
                results.classifications[e.check] = [Frame(0.0, e.scores)]
    return results


def missing_scores(
    policy: Policy, verdict: ModerationVerdict, similarity_checks: frozenset[str]
) -> list[str]:
    """What ``policy`` needs to decide ``verdict``'s upload that the verdict did not record; empty
    when the decision from ``results_of`` is exactly the one the checks' answers would give."""
    ran = {run.check for run in verdict.checks if run.check not in ("cache", "pipeline")}
    if not verdict.evidence:
        return [
            f"{check}: not recorded (verdict written before schema version 3)" for check in sorted(ran)
        ] or (["evidence: not recorded (verdict written before schema version 3)"] if verdict.checks else [])
    missing: list[str] = []
    runs = policy.checks
    for e in verdict.evidence:
        if e.status == SKIPPED and (runs is None or e.check in runs):
            missing.append(f"{e.check}: did not run for this upload (its tenant's policy skipped it)")
        if e.status != SCORED or e.check in similarity_checks or (runs is not None and e.check not in runs):
            continue
        for name, threshold in sorted(policy.classification.get(e.check, {}).items()):
            if name not in e.scores and min(threshold.levels(), default=1.0) < e.score_floor:
                missing.append(f"{e.check}.{name}: scores below {e.score_floor:g} were not recorded")
    return missing
