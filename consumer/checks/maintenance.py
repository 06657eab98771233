"""Index maintenance: a deleted upload leaves the similarity index; a confirmed BLOCK joins it, so a
near-duplicate re-upload is blocked on sight. Each outcome is a log line and a counter."""

from __future__ import annotations

import logging

from consumer.checks.media import Media
from consumer.checks.providers import SimilarityIndex
from consumer.core.records import Decision, ReviewDecision, UploadDeleted
from consumer.errors import PermanentError, TransientError
from consumer.telemetry import metrics

__all__ = ["IndexMaintenance"]

log = logging.getLogger("consumer.maintenance")
ADDS_TO_INDEX = frozenset({Decision.BLOCK, Decision.ESCALATE})


def _media(upload_id: str, url: str | None, data: bytes | None) -> Media | None:
    if data:
        return Media(data=data, filename=upload_id)
    if url:
        return Media(url=url, filename=upload_id)
    return None


class IndexMaintenance:
    def __init__(self, index: SimilarityIndex | None) -> None:
        self._index = index

    async def on_deleted(self, event: UploadDeleted) -> str:
        return await self._apply(
            "remove",
            event.upload_id,
            event.tenant_id,
            _media(event.upload_id, event.media_url, event.media_bytes),
            None,
        )

    async def on_review(self, event: ReviewDecision) -> str:
        if event.decision not in ADDS_TO_INDEX:
            return self._done(
                "add", "skipped", event.upload_id, f"decision {event.decision.value} adds nothing"
            )
        metadata = f"review {event.review_id}: confirmed {event.decision.value}"
        if event.reviewer:
            metadata += f" by {event.reviewer}"
        if event.note:
            metadata += f" ({event.note})"
        return await self._apply(
            "add",
            event.upload_id,
            event.tenant_id,
            _media(event.upload_id, event.media_url, event.media_bytes),
            metadata,
        )

    async def _apply(
        self, op: str, upload_id: str, tenant: str, media: Media | None, metadata: str | None
    ) -> str:
        if self._index is None:
            return self._done(op, "skipped", upload_id, "no similarity index configured")
        if media is None:
            return self._done(op, "failed", upload_id, "event carries neither media_url nor media_bytes")
        try:
            if op == "add":
                ref = await self._index.add(media, tenant, metadata or "")
            else:
                ref = await self._index.remove(media, tenant) or ""
        except (TransientError, PermanentError) as exc:
            return self._done(op, "failed", upload_id, str(exc))
        outcome = "applied" if ref else "not_found"
        return self._done(op, outcome, upload_id, metadata or "")

    @staticmethod
    def _done(op: str, outcome: str, upload_id: str, detail: str) -> str:
        metrics.INDEX_UPDATES.labels(op, outcome).inc()
        level = logging.WARNING if outcome == "failed" else logging.INFO
        log.log(
            level,
            "index %s %s",
            op,
            outcome,
            extra={"upload_id": upload_id, "operation": op, "outcome": outcome, "detail": detail},
        )
        return outcome
