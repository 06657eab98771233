"""Typed records of the wire contracts (pure: no I/O). Field names follow ``schemas/*.avsc``."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "INPUT_RECORDS",
    "CheckEvidence",
    "CheckRun",
    "ClassScore",
    "ClassificationSummary",
    "CsamResult",
    "Decision",
    "MediaType",
    "ModerationVerdict",
    "Reason",
    "ReviewDecision",
    "SimilarityMatch",
    "TimeRange",
    "UploadDeleted",
    "UploadEvent",
    "epoch_millis",
    "verdict_id",
]

_VERDICT_NAMESPACE = uuid.UUID("6f1c2a4e-3b1d-5e8f-9a0b-7c6d5e4f3a2b")
# the full names of the verdict's record-typed union branches (schemas/ModerationVerdict.avsc)
_CSAM_RESULT = "moderation.events.CsamResult"
_CLASSIFICATION_SUMMARY = "moderation.events.ClassificationSummary"


class MediaType(enum.StrEnum):
    IMAGE = "IMAGE"
    GIF = "GIF"
    VIDEO = "VIDEO"
    TEXT = "TEXT"


class Decision(enum.StrEnum):
    ALLOW = "ALLOW"
    REVIEW = "REVIEW"
    BLOCK = "BLOCK"
    ESCALATE = "ESCALATE"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Decision.ALLOW: 0, Decision.REVIEW: 1, Decision.BLOCK: 2, Decision.ESCALATE: 3}


def verdict_id(upload_id: str, policy_version: str) -> str:
    """Deterministic, so a verdict produced twice for one upload carries the same id."""
    return str(uuid.uuid5(_VERDICT_NAMESPACE, f"{upload_id}\x00{policy_version}"))


@dataclass(frozen=True, slots=True)
class UploadEvent:
    upload_id: str
    tenant_id: str
    user_id: str
    media_type: MediaType
    created_at: int
    media_url: str | None = None
    media_bytes: bytes | None = None
    text: str | None = None
    content_sha256: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> UploadEvent:
        return cls(
            upload_id=d["upload_id"],
            tenant_id=d["tenant_id"],
            user_id=d["user_id"],
            media_type=MediaType(d["media_type"]),
            created_at=epoch_millis(d["created_at"]),
            media_url=d.get("media_url"),
            media_bytes=d.get("media_bytes"),
            text=d.get("text"),
            content_sha256=d.get("content_sha256"),
            content_type=d.get("content_type"),
            size_bytes=d.get("size_bytes"),
            metadata=dict(d.get("metadata") or {}),
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "media_type": self.media_type.value,
            "media_url": self.media_url,
            "media_bytes": self.media_bytes,
            "text": self.text,
            "content_sha256": self.content_sha256,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


def epoch_millis(value: Any) -> int:
    """fastavro turns timestamp-millis into datetime on read; keep epoch millis in our records."""
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Reason:
    check: str
    label: str
    score: float | None = None
    threshold: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_seconds: float
    end_seconds: float
    label: str | None = None
    max_score: float | None = None


@dataclass(frozen=True, slots=True)
class CsamResult:
    matched: bool
    hash_type: str | None = None
    match_distance: int | None = None
    scenes: tuple[TimeRange, ...] = ()


@dataclass(frozen=True, slots=True)
class ClassScore:
    class_name: str
    score: float


@dataclass(frozen=True, slots=True)
class ClassificationSummary:
    top_classes: tuple[ClassScore, ...]
    flagged_ranges: tuple[TimeRange, ...] = ()


@dataclass(frozen=True, slots=True)
class SimilarityMatch:
    match_id: str
    score: float
    metadata: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class CheckRun:
    check: str
    provider: str
    latency_ms: float
    outcome: str
    model: str | None = None
    model_version: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class CheckEvidence:
    """One check's findings as the policy reads them (``consumer.policy.evidence``)."""

    check: str
    status: str  # scored | unavailable | rejected | skipped
    scores: dict[str, float] = field(default_factory=dict)
    score_floor: float = 0.0
    hash_match: bool | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ModerationVerdict:
    verdict_id: str
    upload_id: str
    tenant_id: str
    decision: Decision
    reasons: tuple[Reason, ...]
    policy_version: str
    source_topic: str
    source_partition: int
    source_offset: int
    processed_at: int
    csam: CsamResult | None = None
    classification: ClassificationSummary | None = None
    similarity: tuple[SimilarityMatch, ...] = ()
    checks: tuple[CheckRun, ...] = ()
    trace_id: str | None = None
    policy_digest: str | None = None  # schema version 2
    evidence: tuple[CheckEvidence, ...] = ()  # schema version 3

    def to_avro(self, *, tagged: bool = False) -> dict[str, Any]:
        """The record as a dict. ``tagged``: the record-typed branches of the ``csam`` and
        ``classification`` unions in fastavro's tuple notation, ``(name, record)``, which names the
        branch to write; the writer otherwise validates the whole record against each branch to
        find it, as costly as writing it (what the outputs encode; a reader's dict is untagged)."""
        csam: Any = None
        if self.csam is not None:
            csam = {
                "matched": self.csam.matched,
                "hash_type": self.csam.hash_type,
                "match_distance": self.csam.match_distance,
                "scenes": [_range(s) for s in self.csam.scenes],
            }
            if tagged:
                csam = (_CSAM_RESULT, csam)
        summary: Any = None
        if self.classification is not None:
            summary = {
                "top_classes": [
                    {"class_name": c.class_name, "score": c.score} for c in self.classification.top_classes
                ],
                "flagged_ranges": [_range(r) for r in self.classification.flagged_ranges],
            }
            if tagged:
                summary = (_CLASSIFICATION_SUMMARY, summary)
        return {
            "verdict_id": self.verdict_id,
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "decision": self.decision.value,
            "reasons": [_reason(r) for r in self.reasons],
            "csam": csam,
            "classification": summary,
            "similarity": [
                {"match_id": m.match_id, "score": m.score, "metadata": m.metadata, "url": m.url}
                for m in self.similarity
            ],
            "checks": [
                {
                    "check": c.check,
                    "provider": c.provider,
                    "model": c.model,
                    "model_version": c.model_version,
                    "latency_ms": c.latency_ms,
                    "attempts": c.attempts,
                    "outcome": c.outcome,
                }
                for c in self.checks
            ],
            "policy_version": self.policy_version,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "processed_at": self.processed_at,
            "trace_id": self.trace_id,
            "policy_digest": self.policy_digest,
            "evidence": [
                {
                    "check": e.check,
                    "status": e.status,
                    "scores": e.scores,
                    "score_floor": e.score_floor,
                    "hash_match": e.hash_match,
                    "detail": e.detail,
                }
                for e in self.evidence
            ],
        }

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ModerationVerdict:
        csam = d.get("csam")
        cls_summary = d.get("classification")
        return cls(
            verdict_id=d["verdict_id"],
            upload_id=d["upload_id"],
            tenant_id=d["tenant_id"],
            decision=Decision(d["decision"]),
            reasons=tuple(Reason(**r) for r in d["reasons"]),
            csam=None
            if csam is None
            else CsamResult(
                matched=csam["matched"],
                hash_type=csam.get("hash_type"),
                match_distance=csam.get("match_distance"),
                scenes=tuple(TimeRange(**s) for s in csam.get("scenes", [])),
            ),
            classification=None
            if cls_summary is None
            else ClassificationSummary(
                top_classes=tuple(ClassScore(**c) for c in cls_summary["top_classes"]),
                flagged_ranges=tuple(TimeRange(**r) for r in cls_summary.get("flagged_ranges", [])),
            ),
            similarity=tuple(SimilarityMatch(**m) for m in d.get("similarity", [])),
            checks=tuple(CheckRun(**c) for c in d.get("checks", [])),
            policy_version=d["policy_version"],
            source_topic=d["source_topic"],
            source_partition=d["source_partition"],
            source_offset=d["source_offset"],
            processed_at=epoch_millis(d["processed_at"]),
            trace_id=d.get("trace_id"),
            policy_digest=d.get("policy_digest"),
            evidence=tuple(CheckEvidence(**e) for e in d.get("evidence", ())),
        )


def _reason(r: Reason) -> dict[str, Any]:
    return {
        "check": r.check,
        "label": r.label,
        "score": r.score,
        "threshold": r.threshold,
        "detail": r.detail,
    }


def _range(r: TimeRange) -> dict[str, Any]:
    return {
        "start_seconds": r.start_seconds,
        "end_seconds": r.end_seconds,
        "label": r.label,
        "max_score": r.max_score,
    }


@dataclass(frozen=True, slots=True)
class UploadDeleted:
    upload_id: str
    tenant_id: str
    deleted_at: int
    media_url: str | None = None
    media_bytes: bytes | None = None
    content_sha256: str | None = None
    reason: str | None = None

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> UploadDeleted:
        return cls(
            upload_id=d["upload_id"],
            tenant_id=d["tenant_id"],
            deleted_at=epoch_millis(d["deleted_at"]),
            media_url=d.get("media_url"),
            media_bytes=d.get("media_bytes"),
            content_sha256=d.get("content_sha256"),
            reason=d.get("reason"),
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "media_url": self.media_url,
            "media_bytes": self.media_bytes,
            "content_sha256": self.content_sha256,
            "deleted_at": self.deleted_at,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    review_id: str
    upload_id: str
    tenant_id: str
    decision: Decision
    decided_at: int
    reviewer: str | None = None
    media_url: str | None = None
    media_bytes: bytes | None = None
    note: str | None = None

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> ReviewDecision:
        return cls(
            review_id=d["review_id"],
            upload_id=d["upload_id"],
            tenant_id=d["tenant_id"],
            decision=Decision(d["decision"]),
            decided_at=epoch_millis(d["decided_at"]),
            reviewer=d.get("reviewer"),
            media_url=d.get("media_url"),
            media_bytes=d.get("media_bytes"),
            note=d.get("note"),
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "review_id": self.review_id,
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "decision": self.decision.value,
            "reviewer": self.reviewer,
            "media_url": self.media_url,
            "media_bytes": self.media_bytes,
            "note": self.note,
            "decided_at": self.decided_at,
        }


# The records the service reads, by schema name: how each is built from its decoded Avro.
INPUT_RECORDS: dict[str, Callable[[dict[str, Any]], UploadEvent | UploadDeleted | ReviewDecision]] = {
    "UploadEvent": UploadEvent.from_avro,
    "UploadDeleted": UploadDeleted.from_avro,
    "ReviewDecision": ReviewDecision.from_avro,
}
