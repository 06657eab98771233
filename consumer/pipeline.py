"""One upload's moderation: cache by content, CSAM hash match first, then classification and
similarity concurrently, then the policy. Provider failures become reasons, never exceptions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import PermanentError, TransientError
from .media import Media, content_key, media_of
from .policy import CheckResults, Frame, Policy, decide
from .providers import Checked, Classifier, HashMatcher, SimilarityIndex
from .records import (
    CheckRun,
    CsamResult,
    MediaType,
    ModerationVerdict,
    SimilarityMatch,
    UploadEvent,
    verdict_id,
)

__all__ = ["Checks", "Pipeline", "SourcePosition"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checks:
    """The providers a deployment uses; ``None`` switches a check off."""

    csam: HashMatcher | None
    visual: Classifier | None
    text: Classifier | None
    similarity: SimilarityIndex | None


@dataclass(frozen=True, slots=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


class _Runs:
    """Collects results and CheckRun records while the checks of one upload run."""

    def __init__(self) -> None:
        self.results = CheckResults()
        self.runs: list[CheckRun] = []

    async def run(self, check: str, call: Callable[[], Awaitable[Checked[T]]], deadline_s: float) -> T | None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline_s):
                checked = await call()
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
            self.results.rejected[check] = str(exc)
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
        self.runs.append(
            CheckRun(
                check=check,
                provider=checked.provider if checked else "hive",
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                outcome=outcome,
                model=checked.model if checked else None,
                model_version=checked.model_version if checked else None,
                attempts=checked.attempts if checked else attempts,
            )
        )


class _ResultCache:
    """LRU of complete check results by (tenant, content hash): re-uploads skip the providers."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], CheckResults] = OrderedDict()

    def get(self, key: tuple[str, str] | None) -> CheckResults | None:
        if key is None or key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: tuple[str, str] | None, results: CheckResults) -> None:
        if key is None or self._size == 0 or results.unavailable or results.rejected:
            return
        self._items[key] = results
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class Pipeline:
    def __init__(self, checks: Checks, policy: Policy, *, deadline_s: float = 30.0, cache_size: int = 10_000):
        self.checks = checks
        self.policy = policy
        self._deadline = deadline_s
        self._cache = _ResultCache(cache_size)
        self._inflight: dict[tuple[str, str], asyncio.Future[CheckResults]] = {}

    async def moderate(self, upload: UploadEvent, source: SourcePosition) -> ModerationVerdict:
        started = time.time()
        key = content_key(upload)
        cache_key = None if key is None else (upload.tenant_id, key)
        cached = self._cache.get(cache_key)
        if cached is None and cache_key in self._inflight:
            # the same content is being checked right now (a burst of re-uploads): share its answer
            shared = await asyncio.shield(self._inflight[cache_key])
            cached = shared if not (shared.unavailable or shared.rejected) else None
        if cached is not None:
            runs = [CheckRun(check="cache", provider="local", latency_ms=0.0, outcome="cached")]
            return self._verdict(upload, source, cached, runs, started)
        state = _Runs()
        pending: asyncio.Future[CheckResults] | None = None
        if cache_key is not None and cache_key not in self._inflight:
            pending = self._inflight[cache_key] = asyncio.get_running_loop().create_future()
        try:
            if upload.media_type is MediaType.TEXT:
                await self._text(upload, state)
            else:
                await self._media(upload, media_of(upload), state)
        except PermanentError as exc:
            state.results.rejected["pipeline"] = str(exc)
        except BaseException:
            state.results.unavailable.setdefault("pipeline", "cancelled")  # nobody may reuse a partial answer
            raise
        finally:
            if pending is not None:
                pending.set_result(state.results)
                del self._inflight[cache_key]  # type: ignore[arg-type]
        self._cache.put(cache_key, state.results)
        return self._verdict(upload, source, state.results, state.runs, started)

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

    async def _media(self, upload: UploadEvent, media: Media, state: _Runs) -> None:
        if self.checks.csam is not None:
            matcher = self.checks.csam
            csam: CsamResult | None = await state.run("csam", lambda: matcher.match(media), self._deadline)
            state.results.csam = csam
            if csam is not None and csam.matched:
                return  # a known-CSAM match decides alone; nothing else may see the content
        visual, similarity = await asyncio.gather(
            self._classify(media, state), self._similar(media, upload.tenant_id, state)
        )
        if visual is not None:
            state.results.classifications["visual"] = visual
        if similarity is not None:
            state.results.similarity = similarity

    async def _classify(self, media: Media, state: _Runs) -> Sequence[Frame] | None:
        if self.checks.visual is None:
            return None
        classifier = self.checks.visual
        return await state.run("visual", lambda: classifier.classify(media), self._deadline)

    async def _similar(self, media: Media, tenant: str, state: _Runs) -> Sequence[SimilarityMatch] | None:
        if self.checks.similarity is None:
            return None
        index = self.checks.similarity
        return await state.run("similarity", lambda: index.query(media, tenant), self._deadline)

    def _verdict(
        self,
        upload: UploadEvent,
        source: SourcePosition,
        results: CheckResults,
        runs: list[CheckRun],
        started: float,
    ) -> ModerationVerdict:
        outcome = decide(self.policy, results)
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
            csam=results.csam,
            classification=outcome.classification,
            similarity=tuple(results.similarity),
            checks=tuple(runs),
        )
