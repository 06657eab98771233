"""A shadow policy: a candidate decided beside the live one on the same check results (the
verdict's evidence), with no provider call. Every comparison is counted by (live, shadow) decision;
a disagreement becomes a ``ShadowDecision`` record for the shadow topic. The live verdict is never
changed. Pure but for the counter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumer.core.records import Decision, ModerationVerdict, Reason, epoch_millis
from consumer.policy.evidence import results_of, verdict_of
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

    @classmethod
    def between(
        cls, live: ModerationVerdict, shadow: ModerationVerdict, trace_id: str | None = None
    ) -> ShadowDecision:
        """The record of ``shadow`` (the shadow policy's verdict) deciding otherwise than ``live``."""
        return cls(
            upload_id=live.upload_id,
            tenant_id=live.tenant_id,
            verdict_id=live.verdict_id,
            live_decision=live.decision,
            shadow_decision=shadow.decision,
            live_policy_version=live.policy_version,
            live_policy_digest=live.policy_digest or "",
            shadow_policy_version=shadow.policy_version,
            shadow_policy_digest=shadow.policy_digest or "",
            shadow_reasons=shadow.reasons,
            source_topic=live.source_topic,
            source_partition=live.source_partition,
            source_offset=live.source_offset,
            decided_at=live.processed_at,
            trace_id=trace_id,
        )

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
        decided = verdict_of(  # built as the live verdict was, from what the live one recorded
            policy,
            results_of(verdict, self._similarity, policy.checks),
            upload_id=verdict.upload_id,
            tenant_id=verdict.tenant_id,
            source_topic=verdict.source_topic,
            source_partition=verdict.source_partition,
            source_offset=verdict.source_offset,
            processed_at=verdict.processed_at,
        )
        metrics.child(metrics.SHADOW_DECISIONS, verdict.decision.value, decided.decision.value).inc()
        if decided.decision is verdict.decision:
            return None
        return ShadowDecision.between(verdict, decided, trace_id)
