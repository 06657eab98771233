"""One upload's moderation: the registered checks that apply to its media type (``first`` ones in
turn, a hash match ending it there; the rest together), content results cached by content hash,
then the policy. Provider failures become reasons, never exceptions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from consumer.checks.media import MediaPolicy, content_key, media_of, verify_declared_hash
from consumer.checks.plans import ActiveCheck, Plan, Step, plan_for
from consumer.checks.providers import Checked, SimilarityIndex
from consumer.checks.providers.http import deadline_scope
from consumer.checks.registry import Feeds, Subject
from consumer.checks.result_cache import ResultCache
from consumer.core.records import CheckRun, MediaType, ModerationVerdict, UploadEvent
from consumer.errors import InvalidRecordError, ModerationError, PermanentError, TransientError
from consumer.policy.decision import CheckResults, Policy
from consumer.policy.evidence import evidence_of, verdict_of
from consumer.policy.tenants import PolicySet, PolicyStore
from consumer.telemetry import metrics, tracing

__all__ = ["ActiveCheck", "Pipeline", "Rejected", "SourcePosition"]

log = logging.getLogger(__name__)


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

    def __init__(self, providers: dict[str, str]) -> None:
        self._providers = providers  # check -> provider, for runs that failed before any answer
        self.results = CheckResults()
        self.runs: list[CheckRun] = []
        self.refused: PermanentError | None = None  # the first refusal of the content itself

    def reject(self, check: str, exc: PermanentError) -> None:
        self.results.rejected[check] = str(exc)
        if exc.concerns_content and self.refused is None:
            self.refused = exc

    async def run(self, step: Step, subject: Subject) -> None:
        if not tracing.traced():
            await self._run(step, subject)
            return
        with tracing.check_span(step.name, self._providers.get(step.name, "unknown")) as span:
            await self._run(step, subject)
            outcome = self.runs[-1].outcome  # recorded just now: no await since
            tracing.annotate(outcome=outcome)
            if outcome != "ok":
                tracing.failed(outcome, span)

    async def _run(self, step: Step, subject: Subject) -> None:
        check = step.name
        started = time.perf_counter()
        try:
            async with asyncio.timeout(step.deadline_s) as scope:
                token = deadline_scope.set(scope)
                try:
                    checked = await step.call(subject)
                finally:
                    deadline_scope.reset(token)
        except TransientError as exc:
            self._record(check, started, "unavailable", attempts=getattr(exc, "attempts", 1))
            self.results.unavailable[check] = str(exc)
            return
        except TimeoutError:
            self._record(check, started, "unavailable")
            self.results.unavailable[check] = f"no answer within {step.deadline_s:g}s"
            return
        except PermanentError as exc:
            self._record(check, started, "rejected")
            self.reject(check, exc)
            return
        except Exception as exc:  # a bug or an answer nobody foresaw: this upload fails closed
            log.error("check %s failed unexpectedly", check, exc_info=True)
            self._record(check, started, "unavailable")
            self.results.unavailable[check] = f"internal error ({type(exc).__name__})"
            return
        self._record(check, started, "ok", checked)
        _feed(self.results, step, checked.value)

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


def _feed(results: CheckResults, step: Step, value: Any) -> None:
    """A check's answer into the part of the results its declaration names."""
    if step.feeds is Feeds.CLASSIFICATION:
        results.classifications[step.name] = value
    elif step.feeds is Feeds.HASH_MATCH:
        results.hash_matches[step.name] = value.result
        if value.classes:
            results.classifications[step.name] = value.classes
    else:
        results.similarity[step.name] = value


def _content_only(results: CheckResults, live: frozenset[str]) -> CheckResults | None:
    """What may be reused for the same content: everything but the live checks' results, if every
    other check finished (a failed similarity query does not spoil the rest)."""
    failed = {*results.unavailable, *results.rejected} - live
    if failed:
        return None
    return replace(results, similarity={}, unavailable={}, rejected={})


def _escalated(results: CheckResults) -> bool:
    return any(match.matched for match in results.hash_matches.values())


class Pipeline:
    """Moderates one upload with the active checks. Results of checks that are not ``live`` are
    cached by (tenant, sha256); live ones (similarity: the index changes) are always asked."""

    def __init__(
        self,
        checks: Sequence[ActiveCheck],
        policy: Policy | PolicySet | PolicyStore,
        *,
        deadline_s: float = 30.0,
        async_deadline_s: float = 300.0,
        async_media: frozenset[MediaType] = frozenset(),
        cache_size: int = 10_000,
        dead_letter_refused: bool = True,
        media: MediaPolicy | None = None,
    ) -> None:
        self.checks = tuple(checks)
        self._media_policy = media or MediaPolicy()
        self._providers = {c.spec.name: c.client.provider for c in self.checks}
        self._live = frozenset(c.spec.name for c in self.checks if c.spec.live)
        self._dead_letter_refused = dead_letter_refused
        self.gates = {c.spec.name: c.gate for c in self.checks if c.gate is not None}
        self.policies = PolicyStore.of(policy)  # reloads replace its sets
        self._plans = {
            kind: plan_for(self.checks, kind, kind in async_media, deadline_s, async_deadline_s)
            for kind in MediaType
        }
        self._narrowed: dict[tuple[MediaType, frozenset[str]], Plan] = {}
        self._cache = ResultCache(cache_size)
        self._inflight: dict[tuple[str, str, str], asyncio.Future[CheckResults | None]] = {}

    @property
    def policy(self) -> Policy:
        """The live default policy."""
        return self.policies.live.default

    def _plan(self, kind: MediaType, policy: Policy) -> Plan:
        """The steps ``kind`` runs under ``policy`` (narrowed to its ``checks``, if it names any)."""
        if policy.checks is None:
            return self._plans[kind]
        found = self._narrowed.get((kind, policy.checks))
        if found is None:
            found = self._narrowed[(kind, policy.checks)] = self._plans[kind].only(policy.checks)
        return found

    @property
    def index(self) -> SimilarityIndex | None:
        """The similarity index review decisions and deletions maintain, if a check has one."""
        return next((c.client.index for c in self.checks if c.client.index is not None), None)

    def open_circuit(self) -> str | None:
        """A check whose provider's circuit is open: intake waits rather than failing uploads."""
        for check, gate in self.gates.items():
            if gate.is_open:
                return check
        return None

    def decide_now(self, upload: UploadEvent, source: SourcePosition) -> ModerationVerdict | None:
        """The verdict, when it needs no provider call (no check applies to this upload); else None
        and the caller awaits ``moderate``. Saves a task per record where nothing waits."""
        policy = self.policies.live.for_tenant(upload.tenant_id)
        plan = self._plan(upload.media_type, policy)
        if plan:
            return None
        state = _Runs(self._providers)
        if upload.media_type is not MediaType.TEXT and not (upload.media_bytes or upload.media_url):
            state.results.rejected["pipeline"] = (
                f"{upload.media_type} upload has neither media_bytes nor media_url"
            )
        return self._verdict(upload, source, state, policy, plan)

    async def moderate(self, upload: UploadEvent, source: SourcePosition) -> ModerationVerdict | Rejected:
        """The verdict; or Rejected when a provider refused the content itself and dead letters are
        wanted for that (otherwise the verdict is REVIEW with ``check_rejected:<check>``)."""
        started = time.time()
        state = _Runs(self._providers)
        policy = self.policies.live.for_tenant(upload.tenant_id)  # one policy from start to verdict
        plan = self._plan(upload.media_type, policy)
        try:
            media = None
            if upload.media_type is not MediaType.TEXT:
                media = await self._media_policy.prepare(media_of(upload))
                verify_declared_hash(upload, media)
            elif not upload.text:
                raise PermanentError("TEXT upload without text", check="pipeline")
            subject = Subject(upload, media)
            key = content_key(upload, media) if self._cache.enabled else None  # hashing only when used
            cache_key = None if key is None else (upload.tenant_id, key, plan.key)
            content = await self._content_results(subject, plan, cache_key, state)
            if content is not None:
                state.results = content
                if plan.live and not _escalated(content):
                    await _together(plan.live, subject, state)
        except InvalidRecordError as exc:
            return Rejected(exc, 1, int(started * 1000))
        except PermanentError as exc:
            state.reject(exc.check or "pipeline", exc)
        except TransientError as exc:
            state.results.unavailable[exc.check or "media"] = str(exc)
        verdict = self._verdict(upload, source, state, policy, plan)
        if state.refused is not None and self._dead_letter_refused and verdict.decision.severity < 2:
            # nothing blocks it, yet part of it could not be checked: keep it whole for a replay
            attempts = max((r.attempts for r in state.runs), default=1)
            return Rejected(state.refused, attempts, int(started * 1000))
        return verdict

    async def _content_results(
        self,
        subject: Subject,
        plan: Plan,
        cache_key: tuple[str, str, str] | None,
        state: _Runs,
    ) -> CheckResults | None:
        """Cached or shared content results when there are any (live checks still to ask); otherwise
        run every check of the plan into ``state`` and return None."""
        cached = self._cache.get(cache_key)
        if cached is None and cache_key in self._inflight:
            # the same content is being checked right now (a burst of re-uploads): share its answer
            cached = await asyncio.shield(self._inflight[cache_key])
        if cached is not None:
            state.runs.append(CheckRun(check="cache", provider="local", latency_ms=0.0, outcome="cached"))
            return replace(
                cached,
                hash_matches=dict(cached.hash_matches),
                classifications=dict(cached.classifications),
            )
        pending: asyncio.Future[CheckResults | None] | None = None
        if cache_key is not None and cache_key not in self._inflight:
            pending = self._inflight[cache_key] = asyncio.get_running_loop().create_future()
        try:
            for step in plan.first:
                await state.run(step, subject)
                if _escalated(state.results):
                    break  # a known-CSAM match decides alone; nothing else may see the content
            else:
                await _together(plan.rest, subject, state)
        except PermanentError as exc:
            state.reject("pipeline", exc)
        except BaseException:
            state.results.unavailable.setdefault("pipeline", "cancelled")  # nobody may reuse a partial answer
            raise
        finally:
            if pending is not None:
                pending.set_result(_content_only(state.results, self._live))
                del self._inflight[cache_key]  # type: ignore[arg-type]
        self._cache.put(cache_key, _content_only(state.results, self._live))
        return None

    def _verdict(
        self, upload: UploadEvent, source: SourcePosition, state: _Runs, policy: Policy, plan: Plan
    ) -> ModerationVerdict:
        return verdict_of(
            policy,
            state.results,
            upload_id=upload.upload_id,
            tenant_id=upload.tenant_id,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            processed_at=int(time.time() * 1000),
            checks=tuple(state.runs),
            evidence=evidence_of(
                state.results, self.policies.evidence_floor, self._skipped(upload.media_type, plan)
            ),
        )

    def _skipped(self, kind: MediaType, plan: Plan) -> tuple[str, ...]:
        """Checks that apply to ``kind`` that ``plan`` (a tenant's) leaves out."""
        full = self._plans[kind]
        return () if plan is full else tuple(sorted(full.names - plan.names))


async def _together(steps: tuple[Step, ...], subject: Subject, state: _Runs) -> None:
    """Runs ``steps`` concurrently; the last one in this task (one task fewer per upload)."""
    if not steps:
        return
    others = [asyncio.create_task(state.run(step, subject)) for step in steps[:-1]]
    try:
        await state.run(steps[-1], subject)
    except asyncio.CancelledError:
        for task in others:
            task.cancel()
        raise
    finally:
        for task in others:
            await task
