"""What a candidate policy would have decided for recorded verdicts (pure: the verdicts come from
``consumer.cli.policy``). Each verdict is decided again from its evidence; a verdict
lacking a score the candidate needs is set aside and named, never guessed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from consumer.core.records import Decision, ModerationVerdict, Reason
from consumer.policy.decision import decide
from consumer.policy.evidence import missing_scores, results_of
from consumer.policy.tenants import PolicySet

__all__ = ["Backtest", "Change"]

ORDER = (Decision.ALLOW, Decision.REVIEW, Decision.BLOCK, Decision.ESCALATE)
MAX_LISTED = 100  # weakened and undecidable verdicts listed (all are counted)


@dataclass(frozen=True, slots=True)
class Change:
    """One verdict the candidate decides otherwise."""

    upload_id: str
    tenant_id: str
    verdict_id: str
    live: Decision
    candidate: Decision
    live_reasons: tuple[Reason, ...]
    candidate_reasons: tuple[Reason, ...]

    @property
    def weakens(self) -> bool:
        """A BLOCK or ESCALATE the candidate would let through more lightly."""
        return self.live.severity >= Decision.BLOCK.severity and self.candidate.severity < self.live.severity

    def describe(self) -> str:
        return (
            f"upload {self.upload_id} (tenant {self.tenant_id}): {self.live} -> {self.candidate};"
            f" live: {_reasons(self.live_reasons)}; candidate: {_reasons(self.candidate_reasons)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "verdict_id": self.verdict_id,
            "live": self.live.value,
            "candidate": self.candidate.value,
            "live_reasons": [_reason(r) for r in self.live_reasons],
            "candidate_reasons": [_reason(r) for r in self.candidate_reasons],
        }


@dataclass
class Backtest:
    """Feed it verdicts with ``add``; read the matrix, examples, weakened and undecidable ones."""

    candidate: PolicySet
    similarity_checks: frozenset[str]
    examples_per_cell: int = 3
    matrix: Counter[tuple[Decision, Decision]] = field(default_factory=Counter)
    examples: dict[tuple[Decision, Decision], list[Change]] = field(default_factory=dict)
    weakened: list[Change] = field(default_factory=list)
    weakened_count: int = 0
    undecidable: list[tuple[str, list[str]]] = field(default_factory=list)
    undecidable_count: int = 0

    def add(self, verdict: ModerationVerdict) -> Decision | None:
        """The candidate's decision for ``verdict`` (None when a needed score was not recorded)."""
        policy = self.candidate.for_tenant(verdict.tenant_id)
        missing = missing_scores(policy, verdict, self.similarity_checks)
        if missing:
            self.undecidable_count += 1
            if len(self.undecidable) < MAX_LISTED:
                self.undecidable.append((verdict.upload_id, missing))
            return None
        outcome = decide(policy, results_of(verdict, self.similarity_checks, policy.checks))
        cell = (verdict.decision, outcome.decision)
        self.matrix[cell] += 1
        if outcome.decision is verdict.decision:
            return outcome.decision
        change = Change(
            verdict.upload_id,
            verdict.tenant_id,
            verdict.verdict_id,
            verdict.decision,
            outcome.decision,
            verdict.reasons,
            outcome.reasons,
        )
        shown = self.examples.setdefault(cell, [])
        if len(shown) < self.examples_per_cell:
            shown.append(change)
        if change.weakens:
            self.weakened_count += 1
            if len(self.weakened) < MAX_LISTED:
                self.weakened.append(change)
        return outcome.decision

    @property
    def decided(self) -> int:
        return sum(self.matrix.values())

    @property
    def changed(self) -> int:
        return sum(n for (live, cand), n in self.matrix.items() if live is not cand)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": {"version": self.candidate.version, "digest": self.candidate.digest},
            "verdicts": self.decided + self.undecidable_count,
            "decided": self.decided,
            "changed": self.changed,
            "matrix": {
                live.value: {cand.value: self.matrix.get((live, cand), 0) for cand in ORDER} for live in ORDER
            },
            "examples": [
                {
                    "live": live.value,
                    "candidate": cand.value,
                    "count": self.matrix[(live, cand)],
                    "examples": [c.to_json() for c in changes],
                }
                for (live, cand), changes in sorted(self.examples.items(), key=_cell_order)
            ],
            "weakened": {"count": self.weakened_count, "listed": [c.to_json() for c in self.weakened]},
            "undecidable": {
                "count": self.undecidable_count,
                "listed": [{"upload_id": u, "missing": m} for u, m in self.undecidable],
            },
        }

    def table(self) -> str:
        width = max(len(d.value) for d in ORDER) + 2
        lines = [
            f"candidate policy {self.candidate.version} (digest {self.candidate.digest[:12]}):"
            f" {self.decided + self.undecidable_count} verdicts, {self.decided} decided again,"
            f" {self.changed} changed",
            "",
            "live \\ candidate".ljust(18) + "".join(d.value.rjust(width) for d in ORDER),
        ]
        for live in ORDER:
            counts = "".join(str(self.matrix.get((live, cand), 0)).rjust(width) for cand in ORDER)
            lines.append(live.value.ljust(18) + counts)
        lines.append("")
        lines.append(f"weakened BLOCK or ESCALATE: {self.weakened_count}")
        lines += [f"  {c.describe()}" for c in self.weakened]
        for (live, cand), changes in sorted(self.examples.items(), key=_cell_order):
            lines.append(f"{live} -> {cand}: {self.matrix[(live, cand)]}, for example")
            lines += [f"  {c.describe()}" for c in changes]
        if self.undecidable_count:
            lines.append(
                f"not decided: {self.undecidable_count} verdicts lack a score the candidate needs"
                " (left out of the matrix)"
            )
            lines += [f"  upload {u}: {'; '.join(m)}" for u, m in self.undecidable]
        return "\n".join(lines)


def _cell_order(item: tuple[tuple[Decision, Decision], object]) -> tuple[int, int]:
    (live, cand), _ = item
    return live.severity, cand.severity


def _reason(r: Reason) -> dict[str, Any]:
    return {"check": r.check, "label": r.label, "score": r.score, "threshold": r.threshold}


def _reasons(reasons: tuple[Reason, ...]) -> str:
    if not reasons:
        return "no rule fired"
    return ", ".join(
        f"{r.check}.{r.label}"
        + (f" {r.score:.3g}" if r.score is not None else "")
        + (f" >= {r.threshold:g}" if r.threshold is not None else "")
        for r in reasons[:3]
    ) + (" ..." if len(reasons) > 3 else "")
