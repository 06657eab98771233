"""One received record, from its bytes to its outputs: decoded and validated (poison becomes a dead
letter), decided at once when no check applies, else moderated in its own task (index maintenance
events update the similarity index). Whatever goes wrong with one record ends as its dead letter
or a fail-closed verdict: it never stops the service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry import context
from opentelemetry.trace import Span

from consumer.checks.maintenance import IndexMaintenance
from consumer.checks.pipeline import Pipeline, Rejected, SourcePosition
from consumer.core.deadletter import Failure
from consumer.core.headers import check_headers
from consumer.core.offsets import TopicPartition
from consumer.core.records import INPUT_RECORDS, ReviewDecision, UploadDeleted, UploadEvent
from consumer.core.scheduler import Work
from consumer.core.validation import (
    MAX_ID_LENGTH,
    check_record_size,
    validate_deleted,
    validate_review,
    validate_upload,
)
from consumer.delivery.outputs import Outputs, Received
from consumer.errors import RegistryUnavailable, SerializationError
from consumer.schema_registry import registry_retrying
from consumer.serde import Codec
from consumer.settings_sections import ProcessingSettings
from consumer.telemetry import tracing

__all__ = ["RecordHandler"]

log = logging.getLogger("consumer.handling")

_INPUT_TYPES = (UploadEvent, ReviewDecision, UploadDeleted)  # each names its upload


def _as_serialization_error(exc: Exception, schema: str) -> SerializationError:
    if isinstance(exc, SerializationError):
        return exc
    return SerializationError(f"{schema} breaks its schema: {type(exc).__name__}: {exc}")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _ending(handle: Coroutine[Any, Any, None], span: Span) -> None:
    try:
        await handle
    finally:
        span.end()


class RecordHandler:
    """``schemas``: topic -> record name (the input topic's records are UploadEvents);
    ``finished(work)``: a record with nothing to produce is done; ``spawn(work, coro)``: run a
    record's moderation as a task the service tracks (drained on revocation and at shutdown)."""

    def __init__(
        self,
        processing: ProcessingSettings,
        codec: Codec,
        pipeline: Pipeline,
        maintenance: IndexMaintenance,
        outputs: Outputs,
        schemas: dict[str, str],
        *,
        finished: Callable[[Work[Received]], None],
        spawn: Callable[[Work[Received], Coroutine[Any, Any, None]], None],
        registry_max_delay_s: float = 10.0,
        group: str = "",
    ) -> None:
        self._processing, self._codec, self._pipeline = processing, codec, pipeline
        self._maintenance, self._outputs, self._schemas = maintenance, outputs, schemas
        self._finished, self._spawn = finished, spawn
        self._registry_max_delay_s = registry_max_delay_s
        self._group = group  # the consumer group, a span attribute
        self.registry_down = False  # a schema lookup failed for want of the registry: intake waits

    def start(self, work: Work[Received]) -> None:
        """Decode and validate here (poison becomes a dead letter); what needs no provider call is
        decided here too (no task); the rest runs as one task per record, as does a record whose
        schema must first be fetched from the registry. Whatever goes wrong with one record ends as
        its dead letter: it never stops the service. With tracing on, the record's ``process`` span
        is current meanwhile, and its task's."""
        if self._outputs.redo(work):  # its outputs were refused before a rewind: answered by a letter
            return
        if not tracing.enabled():
            handle = self._begin(work)
            if handle is not None:
                self._spawn(work, handle)
            return
        msg = work.payload.message
        span, token = tracing.start_process(  # type: ignore[misc]
            work.tp[0], work.tp[1], work.offset, msg.key(), msg.headers(), self._group
        )
        handle = None
        try:
            handle = self._begin(work)
            if handle is not None:
                # the task copies the current context; a span the sampler dropped needs no end
                self._spawn(work, _ending(handle, span) if span.is_recording() else handle)
        finally:
            context.detach(token)
            if handle is None:
                span.end()

    def _begin(self, work: Work[Received]) -> Coroutine[Any, Any, None] | None:
        received, processing = work.payload, self._processing
        msg = received.message
        try:  # headers first: a record over their caps is dead-lettered with its headers cut
            check_headers(
                received.header_count,
                received.header_bytes,
                processing.max_header_count,
                processing.max_header_bytes,
            )
            check_record_size(work.size, processing.max_record_bytes)
            if self._codec.needs_registry(msg.value()):
                return self._resolve(work)
            event = self._decode(msg, work.tp)
        except Exception as exc:  # SerializationError, or anything unforeseen
            self._record_failed(work, exc, None)
            return None
        return self._accept(work, event)

    def _accept(self, work: Work[Received], event: object) -> Coroutine[Any, Any, None] | None:
        """Validate a decoded record and decide it at once if no check applies; else the coroutine
        that handles it."""
        msg = work.payload.message
        upload_id: str | None = None
        try:
            inline_limit = self._processing.inline_media_limit_bytes
            if isinstance(event, _INPUT_TYPES):
                upload_id = event.upload_id[:MAX_ID_LENGTH]
            if isinstance(event, UploadEvent):
                tracing.annotate(upload_id=upload_id, tenant_id=event.tenant_id)
                validate_upload(event, msg.key(), inline_limit=inline_limit)
                source = SourcePosition(work.tp[0], work.tp[1], work.offset)
                verdict = self._pipeline.decide_now(event, source)
                if verdict is not None:
                    self._outputs.verdict(work, event, verdict)
                    return None
            elif isinstance(event, ReviewDecision):
                validate_review(event, inline_limit=inline_limit)
            elif isinstance(event, UploadDeleted):
                validate_deleted(event, inline_limit=inline_limit)
        except Exception as exc:  # InvalidRecordError, or anything unforeseen
            self._record_failed(work, exc, upload_id)
            return None
        return self._handle(work, event)

    async def _resolve(self, work: Work[Received]) -> None:
        """A record of a schema id this process has not seen: its schema from the registry (in a
        thread), retried with backoff while the registry is unreachable (intake is held meanwhile:
        ``registry_down``), then handled like any other record."""
        msg, topic = work.payload.message, work.tp[0]
        schema, value = self._schemas.get(topic, "UploadEvent"), msg.value() or b""
        try:
            record = await registry_retrying(
                lambda: self._codec.resolve(value, schema, topic=topic),
                self._registry_max_delay_s,
                self._registry_unavailable,
            )
            event = INPUT_RECORDS[schema](record)
        except Exception as exc:  # unknown schema id, or a body no registered schema reads
            self.registry_down = False
            self._record_failed(work, _as_serialization_error(exc, schema), None)
            return
        if self.registry_down:
            log.info("schema registry reachable again: intake resumes")
        self.registry_down = False
        handle = self._accept(work, event)
        if handle is not None:
            await handle

    def _registry_unavailable(self, exc: RegistryUnavailable, _delay: float) -> None:
        if not self.registry_down:
            log.warning("%s; intake held, retrying", exc)
        self.registry_down = True

    def _record_failed(
        self, work: Work[Received], exc: Exception, upload_id: str | None, started_ms: int = 0
    ) -> None:
        if not isinstance(exc, SerializationError):
            log.error(
                "record failed unexpectedly; dead-lettered",
                exc_info=True,
                extra={"topic": work.tp[0], "partition": work.tp[1], "offset": work.offset},
            )
        now = _now_ms()
        self._outputs.dead_letter(
            work, Failure.of(exc, first_at_ms=started_ms or now, last_at_ms=now), upload_id
        )

    def _decode(self, msg: Any, tp: TopicPartition) -> object:
        schema = self._schemas.get(tp[0], "UploadEvent")
        try:
            return INPUT_RECORDS[schema](self._codec.decode(msg.value(), schema, topic=tp[0]))
        except Exception as exc:
            raise _as_serialization_error(exc, schema) from None

    async def _handle(self, work: Work[Received], event: object) -> None:
        upload_id = event.upload_id if isinstance(event, UploadEvent) else None
        started = _now_ms()
        try:
            if isinstance(event, UploadDeleted):
                await self._maintenance.on_deleted(event)
                self._finished(work)
            elif isinstance(event, ReviewDecision):
                await self._maintenance.on_review(event)
                self._finished(work)
            else:
                assert isinstance(event, UploadEvent)
                source = SourcePosition(work.tp[0], work.tp[1], work.offset)
                outcome = await self._pipeline.moderate(event, source)
                if isinstance(outcome, Rejected):
                    failure = Failure.of(
                        outcome.error,
                        attempts=outcome.attempts,
                        first_at_ms=outcome.started_ms,
                        last_at_ms=_now_ms(),
                    )
                    self._outputs.dead_letter(work, failure, event.upload_id)
                else:
                    self._outputs.verdict(work, event, outcome)
        except Exception as exc:  # one record's failure, whatever it is: its dead letter
            self._record_failed(work, exc, upload_id, started)
