"""Pure decision logic: check results ⇒ decision, reasons and a classification summary.

No I/O here but ``load_policy`` reading the YAML file once at start.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from consumer.config import location, read_yaml_file, validation_message
from consumer.core.records import (
    ClassificationSummary,
    ClassScore,
    CsamResult,
    Decision,
    Reason,
    SimilarityMatch,
    TimeRange,
)
from consumer.errors import ConfigError

__all__ = ["CheckResults", "Frame", "Outcome", "Policy", "PolicyChecks", "decide", "load_policy"]

DEFAULT_POLICY = Path(str(resources.files("consumer.checks") / "default_policy.yaml"))  # package data
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
        return self

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


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1)
    classification: dict[str, dict[str, Threshold]] = Field(default_factory=dict)
    similarity: SimilarityThresholds = Field(default_factory=SimilarityThresholds)
    fail_open: frozenset[str] = frozenset()  # checks whose unavailability does not force REVIEW

    @cached_property
    def digest(self) -> str:
        """sha256 (hex) of the effective rules, whatever their spelling in YAML: every verdict
        carries it, so it names the exact policy that decided."""
        rules = self.model_dump(mode="json", exclude_none=True)
        rules["fail_open"] = sorted(self.fail_open)
        return hashlib.sha256(json.dumps(rules, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PolicyChecks(Protocol):
    """What the policy is checked against at load: the registered checks (``CheckRegistry``)."""

    def check_policy(self, classification: Mapping[str, object], fail_open: frozenset[str]) -> None: ...


def load_policy(path: Path | None = None, checks: PolicyChecks | None = None) -> Policy:
    """The policy at ``path`` (default: the shipped one); with ``checks``, it may name only
    registered checks, and only those that may fail open in ``fail_open`` (ConfigError)."""
    source = path or DEFAULT_POLICY
    raw = read_yaml_file(source, "policy_file")  # ConfigError naming no line of the file
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        setting = f"policy {location(tuple(err['loc']))}".rstrip()
        raise ConfigError(setting, validation_message(err)) from None
    if checks is not None:
        checks.check_policy(policy.classification, policy.fail_open)
    return policy


@dataclass(frozen=True, slots=True)
class Frame:
    """Class scores of one sampled frame (time 0 for images and text)."""

    time: float
    scores: Mapping[str, float]


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
        peaks = _peaks(frames)
        for name, score in peaks.items():
            t = thresholds.get(name)
            if t is None:
                continue
            crossed = t.decision(score)
            if crossed is not None:
                reasons.append((crossed[0], Reason(check, name, score, crossed[1])))
            if len(frames) > 1 and t.review is not None:
                flagged.extend(_flagged_ranges(frames, name, t.review))
        summary_classes.extend(ClassScore(name, score) for name, score in peaks.items() if not _benign(name))
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


def _peaks(frames: Sequence[Frame]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for frame in frames:
        for name, score in frame.scores.items():
            if score > peaks.get(name, -1.0):
                peaks[name] = score
    return peaks


def _benign(name: str) -> bool:
    return name.startswith("no_") or "_not_" in name or name.startswith("not_")


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
