"""What a finished record produces: its verdict (and the review or escalation copy) or its dead
letter. The record's offset completes when the broker has acknowledged every output.

An output the broker refuses for what it is (too large, invalid) answers the record otherwise: a
refused verdict becomes a dead letter, a refused dead letter a stripped one (provenance and digests,
no original bytes); in exactly-once mode, where the refusal aborts the transaction, when the
rewind brings the record back (``redo``). Any other refusal is a failure of the process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import Message

from consumer.core.deadletter import DeadLetter, Failure
from consumer.core.headers import measure, over_caps
from consumer.core.records import Decision, ModerationVerdict, UploadEvent
from consumer.core.scheduler import Work
from consumer.errors import DeliveryError
from consumer.kafka.sink import Headers, Sink
from consumer.policy.shadow import Shadow
from consumer.serde import Codec
from consumer.settings_sections import KafkaSettings
from consumer.telemetry import metrics, tracing

__all__ = ["Output", "Outputs", "Received"]

log = logging.getLogger("consumer.outputs")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Output(NamedTuple):
    """One record a finished input record produces."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """The scheduler's payload: a consumed record, the assignment epoch it was read under, and its
    headers' count and size (measured once, at intake: each ``message.headers()`` call copies them)."""

    message: Message
    epoch: int | None
    header_count: int = 0
    header_bytes: int = 0


class Outputs:
    """``release(work)``: the record's scheduler slot is free (the key's next record may start);
    ``complete(work)``: its offset is done; ``current(work)``: its result still counts (not stale);
    ``fail(exc)``: the process must stop. ``max_header_count`` / ``max_header_bytes``: the intake's
    caps; the dead letter of a record over them keeps none of its headers."""

    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        sink: Sink,
        *,
        exactly_once: bool,
        release: Callable[[Work[Received]], None],
        complete: Callable[[Work[Received]], None],
        current: Callable[[Work[Received]], bool],
        fail: Callable[[BaseException], None],
        limit: int = 1_000_000,
        shadow: Shadow | None = None,
        max_header_count: int = 64,
        max_header_bytes: int = 64 << 10,
    ) -> None:
        self._kafka, self._codec, self._sink = kafka, codec, sink
        self._exactly_once = exactly_once
        self._release, self._complete, self._current, self._fail = release, complete, current, fail
        self.limit = limit  # the largest record the producer and the dead letter topic accept
        self._shadow = shadow
        self._max_header_count, self._max_header_bytes = max_header_count, max_header_bytes
        self.processed = 0
        # records whose outputs the broker refused in an aborted transaction: a dead letter answers
        # them when the rewind brings them back (value: the failure, and whether to strip it)
        self._refused: dict[tuple[tuple[str, int], int], tuple[Failure, bool]] = {}

    def redo(self, work: Work[Received]) -> bool:
        """True (and its dead letter produced) for a record whose outputs were refused before a
        rewind; False for any other record."""
        refused = self._refused.pop((work.tp, work.offset), None)
        if refused is None:
            return False
        self.dead_letter(work, refused[0], None, strip=refused[1])
        return True

    def verdict(self, work: Work[Received], upload: UploadEvent, verdict: ModerationVerdict) -> None:
        """The verdict goes to the verdict topic, and to the review or escalation topic. Raises
        (nothing produced) when it cannot be encoded; a verdict the broker refuses becomes a dead
        letter."""
        k = self._kafka
        key = work.key or upload.upload_id.encode()
        record, encode = verdict.to_avro(tagged=True), self._codec.encode
        headers = tracing.output_headers(work.payload.message.headers())
        ids = tracing.current_ids()
        if ids is not None:  # the process span's: a downstream service continues this trace
            record["trace_id"] = ids[0]
            tracing.annotate(decision=verdict.decision.value)
        value = encode("ModerationVerdict", record, topic=k.verdict_topic)
        outputs = [Output(k.verdict_topic, key, value, headers)]
        copy_to = None
        if verdict.decision is Decision.REVIEW:
            copy_to = k.review_topic
        elif verdict.decision is Decision.ESCALATE:
            copy_to = k.escalation_topic
        if copy_to is not None:  # encoded per topic: each topic's subject has its own schema id
            outputs.append(Output(copy_to, key, encode("ModerationVerdict", record, topic=copy_to), headers))
        if self._shadow is not None:
            outputs.extend(self._shadow_output(verdict, key, record["trace_id"], headers))

        def refused(err: DeliveryError) -> None:
            now = _now_ms()
            self.dead_letter(work, Failure.of(err, first_at_ms=now, last_at_ms=now), upload.upload_id, False)

        latency = metrics.child(metrics.END_TO_END_LATENCY, upload.media_type.value)
        since = upload.created_at
        if not self._output(work, outputs, upload.upload_id, refused, latency=latency, since=since):
            return
        metrics.child(metrics.VERDICTS, verdict.decision.value).inc()
        if any(r.label.startswith("check_unavailable") for r in verdict.reasons):
            metrics.FAIL_CLOSED.inc()
        self.processed += 1
        if log.isEnabledFor(logging.INFO):
            log.info(
                "verdict",
                extra={
                    "upload_id": upload.upload_id,
                    "decision": verdict.decision.value,
                    "reasons": [r.label for r in verdict.reasons],
                },
            )

    def _shadow_output(
        self, verdict: ModerationVerdict, key: bytes, trace_id: str | None, headers: Headers | None
    ) -> list[Output]:
        """The shadow policy's disagreement record, if any; a failure here never touches the live
        verdict (it is logged and the comparison skipped)."""
        assert self._shadow is not None
        try:
            found = self._shadow.compare(verdict, trace_id)
            if found is None:
                return []
            topic = self._kafka.shadow_topic
            return [
                Output(
                    topic, key, self._codec.encode("ShadowDecision", found.to_avro(), topic=topic), headers
                )
            ]
        except Exception as exc:
            log.error(
                "shadow comparison failed: %s", type(exc).__name__, extra={"upload_id": verdict.upload_id}
            )
            return []

    def dead_letter(
        self,
        work: Work[Received],
        failure: Failure,
        upload_id: str | None,
        release: bool = True,
        *,
        strip: bool = False,
    ) -> None:
        """The record with its provenance to the dead letter topic, cut to fit the output limits
        (``strip``: without its key and value, when even that was refused); the partition goes on.
        ``release=False``: the record's scheduler slot was released already (a refused output)."""
        received = work.payload
        msg = received.message
        count, size = received.header_count, received.header_bytes
        cut = over_caps(count, size, self._max_header_count, self._max_header_bytes)
        # trace headers (the input's, bounded by the propagator, or our span's): none of the input's
        # when its headers are cut
        copied = tracing.output_headers(None if cut else msg.headers()) or []
        whole = DeadLetter(
            msg.key(),
            msg.value(),
            work.tp[0],
            work.tp[1],
            work.offset,
            failure,
            upload_id,
            headers_cut=(count, size) if cut else None,
        )
        letter = whole.bounded(0 if strip else self.limit, measure(copied)[1])
        value = self._codec.encode("DeadLetter", letter.to_avro(), topic=self._kafka.dlq_topic)

        def refused(err: DeliveryError) -> None:
            self.dead_letter(work, failure, upload_id, False, strip=True)

        headers = letter.headers() + copied
        tracing.failed(failure.error_class)
        outputs = [Output(self._kafka.dlq_topic, letter.kafka_key(), value, headers)]
        if not self._output(work, outputs, upload_id, None if strip else refused, release, dead_letter=True):
            return
        metrics.child(metrics.DEAD_LETTERS, failure.error_class).inc()
        log.warning(
            "dead letter: %s",
            failure.message,
            extra={
                "topic": work.tp[0],
                "partition": work.tp[1],
                "offset": work.offset,
                "upload_id": upload_id,
                "error_class": failure.error_class,
                "attempts": failure.attempts,
                "truncated": sorted(letter.truncated),
            },
        )

    def _output(
        self,
        work: Work[Received],
        outputs: list[Output],
        upload_id: str | None,
        on_refused: Callable[[DeliveryError], None] | None,
        release: bool = True,
        dead_letter: bool = False,
        latency: Any = None,
        since: int = 0,
    ) -> bool:
        """Produce a record's outputs; its input offset completes when the broker has acknowledged
        every one. The key's next record may start now: the producer keeps their order. False (and
        nothing produced) for a stale result: the partition's current owner redoes that record.

        An output the broker refuses for what it is (too large, invalid) goes to ``on_refused``, which
        answers the record otherwise (a dead letter); in exactly-once mode, where the refusal aborts
        the transaction, that happens when the rewind brings the record back. Any other refusal
        stops the service without committing past the record."""
        remaining = len(outputs)
        failed = False

        def acknowledged(err: DeliveryError | None) -> None:
            nonlocal remaining, failed
            if err is None:
                remaining -= 1
                if remaining == 0 and not failed:
                    self._complete(work)
                    if latency is not None:  # end-to-end: from the upload's created_at (ms)
                        latency.observe(max(0.0, time.time() - since / 1000))
                return
            if failed:
                return
            failed = True
            if err.record_refused and on_refused is not None:
                log.warning("output refused by the broker: %s", err, extra={"upload_id": upload_id})
                if self._exactly_once:
                    self._remember_refused(work, err, strip=dead_letter)
                else:
                    asyncio.get_running_loop().call_soon(on_refused, err)
                return
            if err.record_refused:  # not even a stripped dead letter gets through: the topic is broken
                log.error("dead letter refused; stopping: %s", err, extra={"upload_id": upload_id})
                self._fail(err)
                return
            if self._exactly_once:  # the transaction cannot commit: it is aborted and rewound
                log.warning("output not acknowledged: %s", err, extra={"upload_id": upload_id})
                return
            log.error("output not acknowledged; stopping: %s", err, extra={"upload_id": upload_id})
            self._fail(err)

        try:
            if not self._current(work):
                return False
            for topic, key, value, headers in outputs:
                self._sink.produce(topic, key, value, headers, on_delivery=acknowledged)
        except DeliveryError as exc:  # refused locally: nothing of it entered a transaction
            if exc.record_refused and on_refused is not None and not failed:
                failed = True
                log.warning("output refused: %s", exc, extra={"upload_id": upload_id})
                on_refused(exc)
                return False
            acknowledged(exc)
            return False
        finally:
            if release:
                self._release(work)
        return True

    def _remember_refused(self, work: Work[Received], err: DeliveryError, *, strip: bool) -> None:
        now = _now_ms()
        self._refused[(work.tp, work.offset)] = (Failure.of(err, first_at_ms=now, last_at_ms=now), strip)
        while len(self._refused) > 10_000:
            del self._refused[next(iter(self._refused))]
