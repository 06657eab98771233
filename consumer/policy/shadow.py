"""A shadow policy: a candidate decided beside the live one on the same check results (the
verdict's evidence), with no provider call. Every comparison is counted by (live, shadow) decision;
a disagreement becomes a ``ShadowDecision`` record for the shadow topic. The live verdict is never
changed. Pure but for the counter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumer.core.records import Decision, ModerationVerdict, Reason, epoch_millis
from consumer.policy.decision import decide
from consumer.policy.evidence import results_of
from consumer.policy.tenants import PolicyStore
from consumer.telemetry import metrics

__all__ = ["Shadow", "ShadowDecision"]


@dataclass(frozen=True, slots=True)
class ShadowDecision:
    """An upload the shadow policy would have decided otherwise (``schemas/ShadowDecision.avsc``)."""

    upload_id: str
    tenant_id: str
    verdict_id: str
    live_decision: Decision
    shadow_decision: Decision
    live_policy_version: str
    live_policy_digest: str
    shadow_policy_version: str
    shadow_policy_digest: str
    shadow_reasons: tuple[Reason, ...]
    source_topic: str
    source_partition: int
    source_offset: int
    decided_at: int
    trace_id: str | None = None

    def to_avro(self) -> dict[str, Any]:
        record = {name: getattr(self, name) for name in self.__slots__}
        record["live_decision"] = self.live_decision.value
        record["shadow_decision"] = self.shadow_decision.value
        record["shadow_reasons"] = [
            {
                "check": r.check,
                "label": r.label,
                "score": r.score,
                "threshold": r.threshold,
                "detail": r.detail,
            }
            for r in self.shadow_reasons
        ]
        return record

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ShadowDecision:
        fields = dict(d)
        fields["live_decision"] = Decision(d["live_decision"])
        fields["shadow_decision"] = Decision(d["shadow_decision"])
        fields["shadow_reasons"] = tuple(Reason(**r) for r in d["shadow_reasons"])
        fields["decided_at"] = epoch_millis(d["decided_at"])
        return cls(**fields)


class Shadow:
    """Compares verdicts with what the store's shadow policies decide (nothing while it has none)."""

    def __init__(self, store: PolicyStore, similarity_checks: frozenset[str]) -> None:
        self._store = store
        self._similarity = similarity_checks

    def compare(self, verdict: ModerationVerdict, trace_id: str | None = None) -> ShadowDecision | None:
        """The disagreement record, or None when the shadow agrees (or there is no shadow)."""
        shadow = self._store.shadow
        if shadow is None:
            return None
        policy = shadow.for_tenant(verdict.tenant_id)
        outcome = decide(policy, results_of(verdict, self._similarity, policy.checks))
        metrics.child(metrics.SHADOW_DECISIONS, verdict.decision.value, outcome.decision.value).inc()
        if outcome.decision is verdict.decision:
            return None
        return ShadowDecision(
            upload_id=verdict.upload_id,
            tenant_id=verdict.tenant_id,
            verdict_id=verdict.verdict_id,
            live_decision=verdict.decision,
            shadow_decision=outcome.decision,
            live_policy_version=verdict.policy_version,
            live_policy_digest=verdict.policy_digest or "",
            shadow_policy_version=policy.version,
            shadow_policy_digest=policy.digest,
            shadow_reasons=outcome.reasons,
            source_topic=verdict.source_topic,
            source_partition=verdict.source_partition,
            source_offset=verdict.source_offset,
            decided_at=verdict.processed_at,
            trace_id=trace_id,
        )
