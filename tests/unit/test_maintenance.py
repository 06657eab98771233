"""Index maintenance decisions over an in-memory index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from consumer.checks.maintenance import IndexMaintenance
from consumer.checks.media import Media
from consumer.checks.providers import Checked
from consumer.core.records import Decision, ReviewDecision, SimilarityMatch, UploadDeleted
from consumer.errors import TransientError
from consumer.telemetry import metrics


@dataclass
class MemoryIndex:
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    fail: bool = False

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        return Checked([], "memory")

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        if self.fail:
            raise TransientError("index down")
        self.added.append((tenant, metadata))
        return "sha"

    async def remove(self, media: Media, tenant: str) -> str | None:
        self.removed.append(media.filename)
        return "id-1" if media.filename == "u1" else None


def decision(d: Decision, **kw: object) -> ReviewDecision:
    base: dict[str, object] = dict(
        review_id="r1",
        upload_id="u1",
        tenant_id="t",
        decision=d,
        decided_at=0,
        reviewer="alice",
        media_url="http://127.0.0.1/x.png",
        note="scam",
    )
    base.update(kw)
    return ReviewDecision(**base)  # type: ignore[arg-type]


def count(op: str, outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "moderation_index_updates_total", {"operation": op, "outcome": outcome}
    )
    return value or 0.0


async def test_confirmed_block_adds_with_metadata_naming_the_decision() -> None:
    index = MemoryIndex()
    before = count("add", "applied")
    assert await IndexMaintenance(index).on_review(decision(Decision.BLOCK)) == "applied"
    assert index.added == [("t", "review r1: confirmed BLOCK by alice (scam)")]
    assert count("add", "applied") == before + 1


async def test_allow_decision_adds_nothing() -> None:
    index = MemoryIndex()
    assert await IndexMaintenance(index).on_review(decision(Decision.ALLOW)) == "skipped"
    assert index.added == []


async def test_deletion_removes_and_reports_not_found() -> None:
    index = MemoryIndex()
    maintenance = IndexMaintenance(index)
    assert await maintenance.on_deleted(UploadDeleted("u1", "t", 0, media_bytes=b"x")) == "applied"
    assert await maintenance.on_deleted(UploadDeleted("u2", "t", 0, media_bytes=b"x")) == "not_found"


async def test_failures_and_missing_media_are_reported_not_raised() -> None:
    before = count("add", "failed")
    maintenance = IndexMaintenance(MemoryIndex(fail=True))
    assert await maintenance.on_review(decision(Decision.BLOCK)) == "failed"
    assert await maintenance.on_review(decision(Decision.BLOCK, media_url=None)) == "failed"
    assert count("add", "failed") == before + 2
