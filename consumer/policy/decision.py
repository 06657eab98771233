"""Pure decision logic: one tenant's effective policy, and check results ⇒ decision, reasons and a
classification summary. No I/O: ``consumer.policy.tenants`` reads files, tenants and reloads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from consumer.core.records import (
    ClassificationSummary,
    ClassScore,
    CsamResult,
    Decision,
    Reason,
    SimilarityMatch,
    TimeRange,
)

__all__ = ["CheckResults", "Frame", "Outcome", "Policy", "Threshold", "decide", "peaks"]

TOP_CLASSES = 5


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    review: float | None = Field(default=None, ge=0, le=1)
    block: float | None = Field(default=None, ge=0, le=1)
    escalate: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.review is not None and self.block is not None and self.block < self.review:
            raise ValueError("block must be >= review")
        if self.block is not None and self.escalate is not None and self.escalate < self.block:
            raise ValueError("escalate must be >= block")
        if self.review is not None and self.escalate is not None and self.escalate < self.review:
            raise ValueError("escalate must be >= review")
        return self

    def levels(self) -> tuple[float, ...]:
        return tuple(v for v in (self.review, self.block, self.escalate) if v is not None)

    def decision(self, score: float) -> tuple[Decision, float] | None:
        """The most severe level ``score`` reaches, with the threshold it crossed."""
        for level, decision in (
            (self.escalate, Decision.ESCALATE),
            (self.block, Decision.BLOCK),
            (self.review, Decision.REVIEW),
        ):
            if level is not None and score >= level:
                return decision, level
        return None


class SimilarityThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    review: float | None = Field(default=None, ge=0, le=1)
    block: float | None = Field(default=0.9, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> SimilarityThresholds:
        if self.review is not None and self.block is not None and self.block < self.review:
            raise ValueError("block must be >= review")
        return self

    def levels(self) -> tuple[float, ...]:
        return tuple(v for v in (self.review, self.block) if v is not None)


class Policy(BaseModel):
    """The rules one upload is decided by: the file's default policy, or a tenant's (the default
    with that tenant's override merged in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1, max_length=128)
    classification: dict[str, dict[str, Threshold]] = Field(default_factory=dict)
    similarity: SimilarityThresholds = Field(default_factory=SimilarityThresholds)
    fail_open: frozenset[str] = frozenset()  # checks whose unavailability does not force REVIEW
    checks: frozenset[str] | None = None  # the checks that run (None: every check the deployment has)

    @model_validator(mode="before")
    @classmethod
    def _unset_classes(cls, data: Any) -> Any:
        """A class (or a whole check) set to null is not thresholded: how an override removes one."""
        if isinstance(data, dict) and isinstance(data.get("classification"), dict):
            data = dict(data)
            data["classification"] = {
                check: {name: t for name, t in classes.items() if t is not None}
                if isinstance(classes, dict)
                else classes
                for check, classes in data["classification"].items()
                if classes is not None
            }
        return data

    @cached_property
    def digest(self) -> str:
        """sha256 (hex) of the effective rules, whatever their spelling in YAML: every verdict
        carries it, so it names the exact policy that decided."""
        rules = self.model_dump(mode="json", exclude_none=True)
        rules["fail_open"] = sorted(self.fail_open)
        if self.checks is not None:
            rules["checks"] = sorted(self.checks)
        return hashlib.sha256(json.dumps(rules, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @cached_property
    def lowest_threshold(self) -> float:
        """The lowest score any rule of this policy reads (1.0 when none)."""
        levels = [v for classes in self.classification.values() for t in classes.values() for v in t.levels()]
        return min([*levels, *self.similarity.levels(), 1.0])


@dataclass(frozen=True, slots=True)
class Frame:
    """Class scores of one sampled frame (time 0 for images and text). ``benign``: the classes
    that say a head found nothing (the provider knows which: its naming), left out of the
    classification summary; they are scored and thresholded like any other."""

    time: float
    scores: Mapping[str, float]
    benign: frozenset[str] = frozenset()


@dataclass(slots=True)
class CheckResults:
    """What the checks of one upload produced; filled by the pipeline, read by ``decide``."""

    hash_matches: dict[str, CsamResult] = field(default_factory=dict)  # check -> its hash-match result
    classifications: dict[str, Sequence[Frame]] = field(default_factory=dict)
    similarity: dict[str, Sequence[SimilarityMatch]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # check -> why
    rejected: dict[str, str] = field(default_factory=dict)  # check -> provider's reason


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    reasons: tuple[Reason, ...]
    classification: ClassificationSummary | None


def decide(policy: Policy, results: CheckResults) -> Outcome:
    reasons: list[tuple[Decision, Reason]] = []
    for check, match in results.hash_matches.items():
        if match.matched:
            distance = None if match.match_distance is None else float(match.match_distance)
            reasons.append(
                (Decision.ESCALATE, Reason(check, "hash_match", score=distance, detail=match.hash_type))
            )
    summary_classes: list[ClassScore] = []
    flagged: list[TimeRange] = []
    for check, frames in results.classifications.items():
        thresholds = policy.classification.get(check, {})
        peak_scores = peaks(frames)
        for name, score in peak_scores.items():
            t = thresholds.get(name)
            if t is None:
                continue
            crossed = t.decision(score)
            if crossed is not None:
                reasons.append((crossed[0], Reason(check, name, score, crossed[1])))
            if len(frames) > 1 and t.review is not None:
                flagged.extend(_flagged_ranges(frames, name, t.review))
        benign = frames[0].benign if len(frames) == 1 else frozenset().union(*(f.benign for f in frames))
        summary_classes.extend(
            ClassScore(name, score) for name, score in peak_scores.items() if name not in benign
        )
    sim = policy.similarity
    for check, matches in results.similarity.items():
        if not matches:
            continue
        best = max(matches, key=lambda m: m.score)
        detail = best.metadata or best.match_id
        if sim.block is not None and best.score >= sim.block:
            reasons.append((Decision.BLOCK, Reason(check, "index_match", best.score, sim.block, detail)))
        elif sim.review is not None and best.score >= sim.review:
            reasons.append((Decision.REVIEW, Reason(check, "index_match", best.score, sim.review, detail)))
    for check, why in results.unavailable.items():
        if check not in policy.fail_open:
            reasons.append((Decision.REVIEW, Reason(check, f"check_unavailable:{check}", detail=why)))
    for check, why in results.rejected.items():
        reasons.append((Decision.REVIEW, Reason(check, f"check_rejected:{check}", detail=why)))

    decision = max((d for d, _ in reasons), key=lambda d: d.severity, default=Decision.ALLOW)
    summary = None
    if results.classifications:
        top = sorted(summary_classes, key=lambda c: c.score, reverse=True)[:TOP_CLASSES]
        summary = ClassificationSummary(tuple(top), tuple(flagged))
    ordered = sorted(reasons, key=lambda dr: dr[0].severity, reverse=True)
    return Outcome(decision, tuple(r for _, r in ordered), summary)


def peaks(frames: Sequence[Frame]) -> dict[str, float]:
    """Each class's highest score over the frames."""
    if len(frames) == 1:
        return dict(frames[0].scores)
    found: dict[str, float] = {}
    for frame in frames:
        for name, score in frame.scores.items():
            if score > found.get(name, -1.0):
                found[name] = score
    return found


def _flagged_ranges(frames: Sequence[Frame], name: str, threshold: float) -> list[TimeRange]:
    """Maximal runs of consecutive frames where ``name`` scores at least ``threshold``.

    A frame stands for the span until the next sample, so a run ends one sampling interval after its
    last frame (1 s at Hive's 1 fps).
    """
    ordered = sorted(frames, key=lambda f: f.time)
    gaps = [b.time - a.time for a, b in itertools.pairwise(ordered) if b.time > a.time]
    interval = min(gaps, default=1.0)
    ranges: list[TimeRange] = []
    start: float | None = None
    end = 0.0
    peak = 0.0
    for frame in ordered:
        score = frame.scores.get(name, 0.0)
        if score >= threshold:
            if start is None:
                start, peak = frame.time, score
            end, peak = frame.time + interval, max(peak, score)
        elif start is not None:
            ranges.append(TimeRange(start, end, name, peak))
            start = None
    if start is not None:
        ranges.append(TimeRange(start, end, name, peak))
    return ranges
