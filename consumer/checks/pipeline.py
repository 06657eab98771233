"""One upload's moderation: cache by content, CSAM hash match first, then classification and
similarity concurrently, then the policy. Provider failures become reasons, never exceptions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from consumer.checks.media import Media, MediaPolicy, content_key, media_of, verify_declared_hash
from consumer.checks.policy import CheckResults, Policy, decide
from consumer.checks.providers import Checked, Classifier, CsamAnswer, HashMatcher, SimilarityIndex
from consumer.checks.providers.http import ProviderGate, deadline_scope
from consumer.core.records import (
    CheckRun,
    MediaType,
    ModerationVerdict,
    UploadEvent,
    verdict_id,
)
from consumer.errors import InvalidRecordError, ModerationError, PermanentError, TransientError
from consumer.operations.telemetry import metrics

__all__ = ["Checks", "Pipeline", "Rejected", "SourcePosition"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_LISTED = 100  # scenes, flagged ranges, matches on one verdict: a provider's flood stays off it


@dataclass(frozen=True, slots=True)
class Checks:
    """The providers a deployment uses; ``None`` switches a check off."""

    csam: HashMatcher | None
    visual: Classifier | None
    text: Classifier | None
    similarity: SimilarityIndex | None
    csam_async: HashMatcher | None = None
    visual_async: Classifier | None = None
    async_media: frozenset[MediaType] = frozenset({MediaType.VIDEO})


@dataclass(frozen=True, slots=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The upload cannot be moderated as sent: a provider refused its content (corrupt, too small,
    unreachable), or its media contradicts the record (a declared hash that is not the bytes')."""

    error: ModerationError
    attempts: int
    started_ms: int  # when moderation of the upload began: its first failed attempt


class _Runs:
    """Collects results and CheckRun records while the checks of one upload run."""

    def __init__(self, providers: Mapping[str, str]) -> None:
        self._providers = providers  # check -> provider, for runs that failed before any answer
        self.results = CheckResults()
        self.runs: list[CheckRun] = []
        self.refused: PermanentError | None = None  # the first refusal of the content itself

    def reject(self, check: str, exc: PermanentError) -> None:
        self.results.rejected[check] = str(exc)
        if exc.concerns_content and self.refused is None:
            self.refused = exc

    async def run(self, check: str, call: Callable[[], Awaitable[Checked[T]]], deadline_s: float) -> T | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline_s) as scope:
                token = deadline_scope.set(scope)
                try:
                    checked = await call()
                finally:
                    deadline_scope.reset(token)
        except TransientError as exc:
            self._record(check, started, "unavailable", attempts=getattr(exc, "attempts", 1))
            self.results.unavailable[check] = str(exc)
            return None
        except TimeoutError:
            self._record(check, started, "unavailable")
            self.results.unavailable[check] = f"no answer within {deadline_s:g}s"
            return None
        except PermanentError as exc:
            self._record(check, started, "rejected")
            self.reject(check, exc)
            return None
        except Exception as exc:  # a bug or an answer nobody foresaw: this upload fails closed
            log.error("check %s failed unexpectedly", check, exc_info=True)
            self._record(check, started, "unavailable")
            self.results.unavailable[check] = f"internal error ({type(exc).__name__})"
            return None
        self._record(check, started, "ok", checked)
        return checked.value

    def _record(
        self,
        check: str,
        started: float,
        outcome: str,
        checked: Checked[Any] | None = None,
        attempts: int = 1,
    ) -> None:
        elapsed = time.perf_counter() - started
        metrics.child(metrics.CHECK_DURATION, check, outcome).observe(elapsed)
        self.runs.append(
            CheckRun(
                check=check,
                provider=checked.provider if checked else self._providers.get(check, "unknown"),
                latency_ms=round(elapsed * 1000, 3),
                outcome=outcome,
                model=checked.model if checked else None,
                model_version=checked.model_version if checked else None,
                attempts=checked.attempts if checked else attempts,
            )
        )


def _content_only(results: CheckResults) -> CheckResults | None:
    """What may be reused for the same content: everything but similarity, if every content check
    finished (a failed similarity query does not spoil the rest)."""
    failed = {*results.unavailable, *results.rejected} - {"similarity"}
    if failed:
        return None
    return replace(results, similarity=(), unavailable={}, rejected={})


def _escalated(results: CheckResults) -> bool:
    return results.csam is not None and results.csam.matched


class _ResultCache:
    """LRU of complete check results by (tenant, content hash): re-uploads skip the providers."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.enabled = size > 0
        self._items: OrderedDict[tuple[str, str], CheckResults] = OrderedDict()

    def get(self, key: tuple[str, str] | None) -> CheckResults | None:
        if key is None or key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: tuple[str, str] | None, results: CheckResults | None) -> None:
        if key is None or self._size == 0 or results is None:
            return
        self._items[key] = results
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class Pipeline:
    """Moderates one upload. Content results (CSAM, classifiers) are cached by (tenant, sha256);
    similarity is always asked live, because the index changes (review decisions, deletions)."""

    def __init__(
        self,
        checks: Checks,
        policy: Policy,
        *,
        deadline_s: float = 30.0,
        async_deadline_s: float = 300.0,
        cache_size: int = 10_000,
        gates: Mapping[str, ProviderGate] | None = None,
        dead_letter_refused: bool = True,
        media: MediaPolicy | None = None,
        providers: Mapping[str, str] | None = None,
    ) -> None:
        self.checks = checks
        self._media_policy = media or MediaPolicy()
        self._providers = dict(providers or {})
        self._dead_letter_refused = dead_letter_refused
        self.gates = dict(gates or {})
        self.policy = policy
        self._deadline = deadline_s
        self._async_deadline = async_deadline_s
        self._cache = _ResultCache(cache_size)
        self._inflight: dict[tuple[str, str], asyncio.Future[CheckResults | None]] = {}

    def open_circuit(self) -> str | None:
        """A check whose provider's circuit is open: intake waits rather than failing uploads."""
        for check, gate in self.gates.items():
            if gate.is_open:
                return check
        return None

    def _needs_providers(self, upload: UploadEvent) -> bool:
        c = self.checks
        if upload.media_type is MediaType.TEXT:
            return c.text is not None
        if upload.media_type in c.async_media:
            return c.csam_async is not None or c.visual_async is not None
        similar = upload.media_type is MediaType.IMAGE and c.similarity is not None
        return c.csam is not None or c.visual is not None or similar

    def decide_now(self, upload: UploadEvent, source: SourcePosition) -> ModerationVerdict | None:
        """The verdict, when it needs no provider call (no check applies to this upload); else None
        and the caller awaits ``moderate``. Saves a task per record where nothing waits."""
        if self._needs_providers(upload):
            return None
        state = _Runs(self._providers)
        if upload.media_type is not MediaType.TEXT and not (upload.media_bytes or upload.media_url):
            state.results.rejected["pipeline"] = (
                f"{upload.media_type} upload has neither media_bytes nor media_url"
            )
        return self._verdict(upload, source, state.results, state.runs, time.time())

    async def moderate(self, upload: UploadEvent, source: SourcePosition) -> ModerationVerdict | Rejected:
        """The verdict; or Rejected when a provider refused the content itself and dead letters are
        wanted for that (otherwise the verdict is REVIEW with ``check_rejected:<check>``)."""
        started = time.time()
        state = _Runs(self._providers)
        similar = upload.media_type is MediaType.IMAGE and self.checks.similarity is not None
        try:
            media = None
            if upload.media_type is not MediaType.TEXT:
                media = await self._media_policy.prepare(media_of(upload))
                verify_declared_hash(upload, media)
            key = content_key(upload, media) if self._cache.enabled else None  # hashing only when used
            cache_key = None if key is None else (upload.tenant_id, key)
            content = await self._content_results(upload, media, cache_key, state, similar)
            if content is not None:
                state.results = content
                if similar and media is not None and not _escalated(content):
                    await self._similar(media, upload.tenant_id, state)
        except InvalidRecordError as exc:
            return Rejected(exc, 1, int(started * 1000))
        except PermanentError as exc:
            state.reject(exc.check or "pipeline", exc)
        except TransientError as exc:
            state.results.unavailable[exc.check or "media"] = str(exc)
        verdict = self._verdict(upload, source, state.results, state.runs, started)
        if state.refused is not None and self._dead_letter_refused and verdict.decision.severity < 2:
            # nothing blocks it, yet part of it could not be checked: keep it whole for a replay
            attempts = max((r.attempts for r in state.runs), default=1)
            return Rejected(state.refused, attempts, int(started * 1000))
        return verdict

    async def _content_results(
        self,
        upload: UploadEvent,
        media: Media | None,
        cache_key: tuple[str, str] | None,
        state: _Runs,
        similar: bool,
    ) -> CheckResults | None:
        """Cached or shared content results when there are any (similarity still to ask); otherwise run
        every check into ``state`` (similarity concurrently with classification) and return None."""
        cached = self._cache.get(cache_key)
        if cached is None and cache_key in self._inflight:
            # the same content is being checked right now (a burst of re-uploads): share its answer
            cached = await asyncio.shield(self._inflight[cache_key])
        if cached is not None:
            state.runs.append(CheckRun(check="cache", provider="local", latency_ms=0.0, outcome="cached"))
            return replace(cached, classifications=dict(cached.classifications))
        pending: asyncio.Future[CheckResults | None] | None = None
        if cache_key is not None and cache_key not in self._inflight:
            pending = self._inflight[cache_key] = asyncio.get_running_loop().create_future()
        try:
            if media is None:
                await self._text(upload, state)
            else:
                await self._media(upload, media, state, similar)
        except PermanentError as exc:
            state.reject("pipeline", exc)
        except BaseException:
            state.results.unavailable.setdefault("pipeline", "cancelled")  # nobody may reuse a partial answer
            raise
        finally:
            if pending is not None:
                pending.set_result(_content_only(state.results))
                del self._inflight[cache_key]  # type: ignore[arg-type]
        self._cache.put(cache_key, _content_only(state.results))
        return None

    async def _text(self, upload: UploadEvent, state: _Runs) -> None:
        if self.checks.text is None:
            return
        if not upload.text:
            raise PermanentError("TEXT upload without text", check="pipeline")
        classifier = self.checks.text
        text = upload.text
        frames = await state.run("text", lambda: classifier.classify(text), self._deadline)
        if frames is not None:
            state.results.classifications["text"] = frames

    async def _media(self, upload: UploadEvent, media: Media, state: _Runs, similar: bool) -> None:
        asynchronous = upload.media_type in self.checks.async_media
        deadline = self._async_deadline if asynchronous else self._deadline
        matcher = self.checks.csam_async if asynchronous else self.checks.csam
        if matcher is not None:
            m = matcher
            answer: CsamAnswer | None = await state.run("csam", lambda: m.match(media), deadline)
            if answer is not None:
                state.results.csam = answer.result
                if answer.classes:
                    state.results.classifications["csam"] = answer.classes
            if _escalated(state.results):
                return  # a known-CSAM match decides alone; nothing else may see the content
        if not similar:
            await self._classify(media, state, asynchronous, deadline)
            return
        similarity = asyncio.create_task(self._similar(media, upload.tenant_id, state))
        try:
            await self._classify(media, state, asynchronous, deadline)
        except asyncio.CancelledError:
            similarity.cancel()
            raise
        finally:
            await similarity

    async def _classify(self, media: Media, state: _Runs, asynchronous: bool, deadline: float) -> None:
        classifier = self.checks.visual_async if asynchronous else self.checks.visual
        if classifier is not None:
            c = classifier
            frames = await state.run("visual", lambda: c.classify(media), deadline)
            if frames is not None:
                state.results.classifications["visual"] = frames

    async def _similar(self, media: Media, tenant: str, state: _Runs) -> None:
        if self.checks.similarity is None:
            return
        index = self.checks.similarity
        matches = await state.run("similarity", lambda: index.query(media, tenant), self._deadline)
        if matches is not None:
            state.results.similarity = matches

    def _verdict(
        self,
        upload: UploadEvent,
        source: SourcePosition,
        results: CheckResults,
        runs: list[CheckRun],
        started: float,
    ) -> ModerationVerdict:
        outcome = decide(self.policy, results)
        csam, summary = results.csam, outcome.classification
        if csam is not None and len(csam.scenes) > MAX_LISTED:
            csam = replace(csam, scenes=csam.scenes[:MAX_LISTED])
        if summary is not None and len(summary.flagged_ranges) > MAX_LISTED:
            summary = replace(summary, flagged_ranges=summary.flagged_ranges[:MAX_LISTED])
        matches = sorted(results.similarity, key=lambda m: m.score, reverse=True)[:MAX_LISTED]
        return ModerationVerdict(
            verdict_id=verdict_id(upload.upload_id, self.policy.version),
            upload_id=upload.upload_id,
            tenant_id=upload.tenant_id,
            decision=outcome.decision,
            reasons=outcome.reasons,
            policy_version=self.policy.version,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            processed_at=int(time.time() * 1000),
            csam=csam,
            classification=summary,
            similarity=tuple(matches),
            checks=tuple(runs),
        )
