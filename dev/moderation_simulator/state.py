"""The simulator's mutable world: keys and projects, the CSAM hash list, the custom index, score
overrides, hosted media, and the latency model. Pure data plus PDQ; no HTTP here."""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from moderation_simulator import pdq
from moderation_simulator.etiquette import Faults, TokenBucket

__all__ = [
    "DEFAULT_HUAWEI_TOKEN",
    "DEFAULT_KEYS",
    "PROJECT_IDS",
    "HuaweiImage",
    "IndexEntry",
    "LatencyModel",
    "Project",
    "SimulatorState",
    "StartupSettings",
    "Task",
]

ProjectKind = Literal["visual", "text", "csam", "csam_combined", "index"]

DEFAULT_KEYS: dict[ProjectKind, str] = {
    "visual": "sim-visual-key",
    "text": "sim-text-key",
    "csam": "sim-csam-key",
    "csam_combined": "sim-csam-combined-key",
    "index": "sim-index-key",
}
DEFAULT_HUAWEI_TOKEN = "sim-huawei-token"
PROJECT_IDS: dict[ProjectKind, int] = {
    "visual": 18410,
    "text": 18416,
    "csam": 18420,
    "csam_combined": 18421,
    "index": 275729,
}
MODELS: dict[ProjectKind, tuple[str, str]] = {
    "visual": ("visual_moderation_sim", "VISUAL_CLASSIFICATION"),
    "text": ("textmod_sim_2langs", "TEXT_CLASSIFICATION"),
    "csam": ("thorn_csam_hash_sim", "HASH_MATCHING"),
    "csam_combined": ("csam_combined_sim", "HASH_MATCHING_AND_CLASSIFICATION"),
    "index": ("custom_index_sim", "CUSTOM_INDEX"),
}
CSAM_HEADS: tuple[tuple[str, ...], ...] = (("csam", "pornography", "other"),)
MAX_TASKS = 20_000

VISUAL_HEADS: tuple[tuple[str, ...], ...] = (
    ("general_nsfw", "general_suggestive", "general_not_nsfw_not_suggestive"),
    ("gun_in_hand", "gun_not_in_hand", "no_gun"),
    ("very_bloody", "a_little_bloody", "no_blood"),
    ("yes_drugs", "no_drugs"),
)
TEXT_HEADS: tuple[tuple[str, ...], ...] = (
    ("sexual", "suggestive", "no_sexual"),
    ("violence", "no_violence"),
    ("self_harm", "no_self_harm"),
    ("yes_spam", "no_spam"),
)
TEXT_LEXICON: dict[str, tuple[str, float]] = {
    r"\b(kill|murder|shoot|stab|attack)\w*": ("violence", 0.93),
    r"\b(nude|naked|porn|xxx)\w*": ("sexual", 0.95),
    r"\b(buy now|free money|click here|limited offer)": ("yes_spam", 0.97),
    r"\b(hurt myself|end it all)": ("self_harm", 0.88),
}


@dataclass(frozen=True, slots=True)
class Project:
    kind: ProjectKind
    project_id: int
    user_id: int = 5822


@dataclass(slots=True)
class IndexEntry:
    id: str
    sha256: str
    hashes: list[pdq.PdqHash]
    metadata: str | None
    url: str | None


@dataclass(slots=True)
class LatencyModel:
    """Log-normal latency per call: ``median_ms`` and ``p99_ms`` (0 = answer at once)."""

    median_ms: float = 0.0
    p99_ms: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def sample_s(self) -> float:
        if self.median_ms <= 0:
            return 0.0
        sigma = 0.0 if self.p99_ms <= self.median_ms else math.log(self.p99_ms / self.median_ms) / 2.326
        return self.median_ms * math.exp(self.rng.gauss(0.0, sigma)) / 1000.0


@dataclass(slots=True)
class ScoreOverride:
    scores: dict[str, float]
    sha256: str | None = None
    hashes: list[pdq.PdqHash] = field(default_factory=list)
    text: str | None = None


@dataclass(slots=True)
class Task:
    """An async task: ``body`` is None while it is processing."""

    project: Project
    body: dict[str, object] | None = None


@dataclass(slots=True)
class HuaweiImage:
    hashes: list[pdq.PdqHash]
    tags: dict[str, str]


@dataclass(slots=True)
class StartupSettings:
    """What ``reset`` returns to: the command line's choices."""

    faults: dict[str, float] = field(default_factory=dict)
    hang_s: float = 30.0
    rate_limit: float | None = None
    seed: int = 1234


class SimulatorState:
    def __init__(
        self,
        keys: dict[ProjectKind, str] | None = None,
        latency: LatencyModel | None = None,
        huawei_token: str = DEFAULT_HUAWEI_TOKEN,
        startup: StartupSettings | None = None,
    ):
        self._start_keys: dict[ProjectKind, list[str]] = {
            kind: [key] for kind, key in (keys or DEFAULT_KEYS).items()
        }
        self._start_huawei_token = huawei_token
        self.projects: dict[str, Project] = {}
        self.huawei_tokens: list[str] = []
        self.latency = latency or LatencyModel()
        self._startup = startup or StartupSettings()
        self.reset()

    def set_keys(self, kind: ProjectKind, keys: list[str]) -> None:
        """The keys ``kind``'s project accepts from now on (its other keys are refused: a rotation)."""
        self.projects = {k: p for k, p in self.projects.items() if p.kind != kind}
        self.projects.update({key: Project(kind, PROJECT_IDS[kind]) for key in keys})

    def key_counts(self) -> dict[str, int]:
        """How many keys each project accepts now (``huawei``: tokens), never the keys."""
        counts: dict[str, int] = {kind: 0 for kind in PROJECT_IDS}
        for project in self.projects.values():
            counts[project.kind] += 1
        return {**counts, "huawei": len(self.huawei_tokens)}

    def reset(self) -> None:
        self.projects = {}
        for kind, keys in self._start_keys.items():
            self.set_keys(kind, keys)
        self.huawei_tokens = [self._start_huawei_token]
        self.csam_hashes: list[int] = []
        self.csam_md5: set[str] = set()
        self.index: dict[str, IndexEntry] = {}
        self.overrides: list[ScoreOverride] = []
        self.media: dict[str, tuple[bytes, str]] = {}
        self.media_failures: dict[str, int] = {}  # hosted media name -> 503s still to answer
        self.requests: dict[str, int] = {}
        self.tasks: OrderedDict[str, Task] = OrderedDict()
        self.libraries: dict[tuple[str, str], dict[str, HuaweiImage]] = {}
        self.balances: dict[str, int | None] = {}
        self.faults = Faults(hang_s=self._startup.hang_s, rng=random.Random(self._startup.seed))
        for name, rate in self._startup.faults.items():
            self.faults.set(name, rate)
        self.rate_limit: tuple[float, float] | None = (
            None if self._startup.rate_limit is None else (self._startup.rate_limit, self._startup.rate_limit)
        )
        self.buckets: dict[str, TokenBucket] = {}

    # --- etiquette ---------------------------------------------------------------------------
    def throttle(self, key: str, now: float) -> float:
        """0 if the key may proceed, else seconds until its bucket has a token."""
        if self.rate_limit is None:
            return 0.0
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(*self.rate_limit)
        return bucket.take(now)

    def set_rate_limit(self, rps: float | None, burst: float | None = None) -> None:
        self.rate_limit = None if rps is None else (rps, burst or rps)
        self.buckets.clear()

    def charge(self, project: Project) -> bool:
        """Take one credit; False when the project's balance is exhausted."""
        credits = self.balances.get(project.kind)
        if credits is None:
            return True
        if credits <= 0:
            return False
        self.balances[project.kind] = credits - 1
        return True

    # --- async tasks --------------------------------------------------------------------------
    def new_task(self, task_id: str, project: Project) -> Task:
        task = self.tasks[task_id] = Task(project)
        while len(self.tasks) > MAX_TASKS:
            self.tasks.popitem(last=False)
        return task

    def count(self, endpoint: str) -> None:
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1

    # --- CSAM -------------------------------------------------------------------------------
    def add_csam_hash(self, value: int) -> None:
        self.csam_hashes.append(value)

    def csam_frames(self, frames: list[tuple[float, Image.Image]]) -> list[tuple[float, int]]:
        """(time, distance) of every sampled frame that matches the hash list."""
        found = []
        for t, frame in frames:
            d = self.csam_match(frame)
            if d is not None:
                found.append((t, d))
        return found

    def csam_match(self, image: Image.Image) -> int | None:
        """Smallest distance to a listed hash over the query's dihedral variants, if it matches."""
        variants = [h for h in pdq.hash_variants(image) if h.usable]
        best: int | None = None
        for listed in self.csam_hashes:
            for v in variants:
                d = pdq.distance(listed, v.value)
                if d <= pdq.MATCH_DISTANCE and (best is None or d < best):
                    best = d
        return best

    # --- custom index -----------------------------------------------------------------------
    def index_add(self, data: bytes, image: Image.Image, metadata: str | None, url: str | None) -> IndexEntry:
        sha = hashlib.sha256(data).hexdigest()
        entry = IndexEntry(str(uuid.uuid1()), sha, [pdq.hash_image(image)], metadata, url)
        self.index[entry.id] = entry
        return entry

    def index_query(self, image: Image.Image) -> list[tuple[IndexEntry, float]]:
        variants = [h for h in pdq.hash_variants(image) if h.usable]
        found: list[tuple[IndexEntry, float]] = []
        for entry in self.index.values():
            d = min(
                (pdq.distance(e.value, v.value) for e in entry.hashes if e.usable for v in variants),
                default=256,
            )
            if d <= pdq.MATCH_DISTANCE:
                found.append((entry, round(1.0 - d / 256.0, 4)))
        found.sort(key=lambda ef: ef[1], reverse=True)
        return found

    def index_remove(self, data: bytes, image: Image.Image) -> IndexEntry | None:
        sha = hashlib.sha256(data).hexdigest()
        for entry in self.index.values():
            if entry.sha256 == sha:
                return self.index.pop(entry.id)
        h = pdq.hash_image(image)
        for entry in list(self.index.values()):
            if any(pdq.distance(e.value, h.value) <= 8 for e in entry.hashes):
                return self.index.pop(entry.id)
        return None

    # --- classification ---------------------------------------------------------------------
    def visual_scores(self, data: bytes, image: Image.Image) -> dict[str, float]:
        sha = hashlib.sha256(data).hexdigest()
        forced = self._override_for_image(sha, image)
        return _heads(VISUAL_HEADS, forced, seed=sha)

    def csam_classes(self, data: bytes, image: Image.Image) -> dict[str, float]:
        sha = hashlib.sha256(data).hexdigest()
        forced = self._override_for_image(sha, image)
        return _heads(CSAM_HEADS, forced, seed=sha)

    def text_scores(self, text: str) -> dict[str, float]:
        forced: dict[str, float] = {}
        for o in self.overrides:
            if o.text is not None and o.text == text:
                forced.update(o.scores)
        if not forced:
            lowered = text.lower()
            for pattern, (name, score) in TEXT_LEXICON.items():
                if re.search(pattern, lowered):
                    forced[name] = max(forced.get(name, 0.0), score)
        return _heads(TEXT_HEADS, forced, seed=hashlib.sha256(text.encode()).hexdigest())

    def _override_for_image(self, sha: str, image: Image.Image) -> dict[str, float]:
        forced: dict[str, float] = {}
        query: pdq.PdqHash | None = None
        for o in self.overrides:
            if o.sha256 == sha:
                forced.update(o.scores)
                continue
            if o.hashes:
                query = query or pdq.hash_image(image)
                if query.usable and any(
                    pdq.distance(h.value, query.value) <= pdq.MATCH_DISTANCE for h in o.hashes
                ):
                    forced.update(o.scores)
        return forced


def _heads(heads: tuple[tuple[str, ...], ...], forced: dict[str, float], seed: str) -> dict[str, float]:
    """Scores per head summing to 1: forced classes keep their score, the benign last class takes the
    rest; unforced heads get small deterministic scores derived from the content."""
    rng = random.Random(seed)
    scores: dict[str, float] = {}
    for head in heads:
        chosen = {c: min(max(forced[c], 0.0), 1.0) for c in head if c in forced}
        total = sum(chosen.values())
        if total > 1.0:
            chosen = {c: s / total for c, s in chosen.items()}
            total = 1.0
        remaining = [c for c in head if c not in chosen]
        if not remaining:
            scores.update(chosen)
            continue
        noise = {c: rng.uniform(0.0005, 0.03) * (1.0 - total) for c in remaining[:-1]}
        benign = max(0.0, 1.0 - total - sum(noise.values()))
        scores.update(chosen)
        scores.update(noise)
        scores[remaining[-1]] = benign
    return scores
