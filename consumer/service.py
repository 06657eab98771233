"""The running service: consume uploads, moderate them concurrently (per-key order, bounded),
produce verdicts, and commit an input offset only after its verdict is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from consumer.checks.maintenance import IndexMaintenance
from consumer.checks.pipeline import Rejected, SourcePosition
from consumer.checks.policy import Policy
from consumer.config import Settings
from consumer.core.deadletter import Failure
from consumer.core.epochs import Epochs
from consumer.core.offsets import OffsetTracker, Position, TopicPartition
from consumer.core.records import ReviewDecision, UploadDeleted, UploadEvent
from consumer.core.scheduler import Scheduler, Work
from consumer.core.validation import check_record_size, validate_upload
from consumer.delivery.outputs import Outputs, Received
from consumer.delivery.strategies import delivery_for
from consumer.errors import SerializationError
from consumer.kafka import Sink, Source, ensure_topics, output_limit
from consumer.operations.callbacks import CallbackServer, Correlator
from consumer.operations.health import Probe
from consumer.operations.supervisor import worker_index
from consumer.operations.telemetry import metrics
from consumer.operations.watch import Watch
from consumer.serde import AvroCodec
from consumer.transports.httpclient import HttpClient
from consumer.wiring import build_pipeline, check_settings, media_client

__all__ = ["ModerationService"]

log = logging.getLogger("consumer.service")
T = TypeVar("T")

_RECORDS: dict[str, Callable[[dict[str, Any]], object]] = {
    "UploadEvent": UploadEvent.from_avro,
    "UploadDeleted": UploadDeleted.from_avro,
    "ReviewDecision": ReviewDecision.from_avro,
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def default_transactional_id(group_id: str) -> str:
    """Unique per process on a host (pid), stable per pod (a container's pid does not change)."""
    return f"{group_id}-{socket.gethostname()}-w{worker_index()}-p{os.getpid()}"


class ModerationService:
    """Owns the Kafka clients, the callback receiver and the pipeline for one process."""

    def __init__(
        self,
        settings: Settings,
        http: HttpClient,
        codec: AvroCodec | None = None,
        *,
        policy: Policy | None = None,
    ) -> None:
        """``policy``: what ``wiring.check_settings`` returned, when the caller checked the settings
        already (read at start otherwise)."""
        self.settings = settings
        self.http = http
        self._policy = policy
        self._worker = worker_index()
        self.correlator = Correlator()
        self._callbacks: CallbackServer | None = None
        self.codec = codec or AvroCodec()
        self.tracker = OffsetTracker()
        p = settings.processing
        self.scheduler = Scheduler(
            p.ordering,
            max_records=p.max_in_flight,
            max_bytes=p.max_in_flight_bytes,
            pause_at=p.partition_buffer,
            max_buffered_bytes=p.max_buffered_bytes,
        )
        self.epochs = Epochs()
        self._running: dict[asyncio.Task[None], Work[Received]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-source")
        self._fatal: BaseException | None = None
        self.stopping = False
        self._kicked = False
        self.intake_held = False
        self._schemas: dict[str, str] = {}
        self.exactly_once = p.delivery == "exactly_once"
        self.watch = Watch(settings, self, self._worker)
        self._media_http: HttpClient | None = None
        self.last_poll = time.monotonic()

    # --- what the parts it starts read ---------------------------------------------------------
    @property
    def assigned(self) -> int:
        return len(self.epochs)

    @property
    def source(self) -> Source:
        return self._source

    async def in_kafka_thread(self, call: Callable[[], T]) -> T:
        """Every consumer call runs on one thread (confluent-kafka's consumer is not thread-safe)."""
        return await asyncio.get_running_loop().run_in_executor(self._kafka_thread, call)

    @property
    def fatal(self) -> BaseException | None:
        return self._fatal

    @property
    def callback_url(self) -> str | None:
        return None if self._callbacks is None else self._callbacks.url

    @property
    def health_port(self) -> int | None:
        return self.watch.port

    def alive(self) -> Probe:
        return self.watch.alive()

    def ready(self) -> Probe:
        return self.watch.ready()

    # --- rebalance callbacks (on the kafka thread, inside consume; state changes go to the loop) --
    def _on_assign(self, parts: list[TopicPartition]) -> None:
        try:
            committed = self._source.committed(parts)
        except KafkaException as exc:  # the map is an optimisation: without it finished work is redone
            log.warning("cannot read committed positions: %s", exc.args[0].str())
            committed = {}
        self._on_loop(self._assigned(parts, committed))

    async def _assigned(self, parts: list[TopicPartition], committed: dict[TopicPartition, Position]) -> None:
        self.epochs.assign(parts)
        for tp, position in committed.items():
            skipped = self.tracker.restore(tp, position.offset, position.metadata)
            if skipped:
                log.info(
                    "restored finished offsets beyond the commit",
                    extra={
                        "topic": tp[0],
                        "partition": tp[1],
                        "offset": position.offset,
                        "finished": skipped,
                    },
                )
        metrics.ASSIGNED.set(len(self.epochs))

    def _on_revoke(self, parts: list[TopicPartition]) -> None:
        """Cooperative revocation: drain what runs for these partitions (bounded), commit, let go."""
        positions = self._on_loop(self._release(parts, drain_s=self.settings.processing.revoke_drain_s))
        if positions:
            self._source.commit(positions)
        self._source.resume(parts)  # the scheduler forgot their pause: the consumer must too

    def _on_lost(self, parts: list[TopicPartition]) -> None:
        """Lost (another member owns them already): drop everything, commit nothing. In exactly-once
        mode the open transaction may hold their outputs: it is aborted and the rest rewound."""
        self._on_loop(self._release(parts, drain_s=0.0, commit=False))
        self._source.resume(parts)

    async def _release(
        self, parts: list[TopicPartition], drain_s: float, commit: bool = True
    ) -> dict[TopicPartition, Position]:
        mine = set(parts)
        for tp in parts:
            self.scheduler.drop(tp)  # stop dispatch: waiting records are redelivered to the next owner
        positions: dict[TopicPartition, Position] = {}
        if commit:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + drain_s
            running = [task for task, work in self._running.items() if work.tp in mine]
            if running and drain_s > 0:
                await asyncio.wait(running, timeout=drain_s)
            positions = await self.delivery.revoke(parts, max(0.0, deadline - loop.time()))
        else:
            await self.delivery.lose(parts)
        for tp in parts:
            self.tracker.drop(tp)
            self.epochs.release(tp)  # results still in flight for it are discarded
        self.watch.commits.committed(parts)
        metrics.REBALANCES.inc()
        metrics.ASSIGNED.set(len(self.epochs))
        return positions

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # --- main loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        k = self.settings.kafka
        policy = self._policy or check_settings(self.settings)
        if k.create_topics:
            await asyncio.to_thread(ensure_topics, k, k.all_topics())
        self.delivery = delivery_for(
            self.settings, self, k.transactional_id or default_transactional_id(k.group_id)
        )
        await self.delivery.start()
        self._sink = self.delivery.sink
        # callbacks are relayed outside any transaction
        self._relay_sink = Sink(k) if self.exactly_once else self._sink
        self._relay_sink.start()
        self._schemas = {k.deleted_topic: "UploadDeleted", k.review_decision_topic: "ReviewDecision"}
        self.outputs = Outputs(
            k,
            self.codec,
            self._sink,
            exactly_once=self.exactly_once,
            release=self._release_slot,
            complete=self._complete,
            current=self._current,
            fail=self._fail,
            limit=await asyncio.to_thread(output_limit, k, [k.dlq_topic]),
        )
        loop = self._loop = asyncio.get_running_loop()
        tasks = None
        if self.settings.processing.async_media:
            self._callbacks = CallbackServer(self.settings, self._relay_sink, self.correlator, self._worker)
            tasks = await self._callbacks.start(loop)
        self._media_http = media_client(self.settings)
        self.pipeline = build_pipeline(
            self.settings, self.http, tasks, media_http=self._media_http, policy=policy
        )
        self.maintenance = IndexMaintenance(self.pipeline.checks.similarity)
        self._source = Source(
            k,
            [k.input_topic, k.deleted_topic, k.review_decision_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        await self.watch.start()
        committer = asyncio.create_task(self._commit_periodically(self.delivery.interval_s))
        log.info(
            "consuming",
            extra={
                "topic": k.input_topic,
                "group": k.group_id,
                "delivery": self.settings.processing.delivery,
            },
        )
        try:
            while not stop.is_set() and self._fatal is None:
                messages = await loop.run_in_executor(
                    self._kafka_thread, self._source.consume, self.settings.processing.max_poll_records, 0.1
                )
                self.last_poll = time.monotonic()
                if self.delivery.rewind_needed:
                    await self.delivery.rewind()  # the batch in hand predates the rewind: read again
                    continue
                for msg in messages:
                    self._offer(msg)
                self._start_ready()
                await self._apply_backpressure()
        finally:
            committer.cancel()
            await self._drain()
            await self.delivery.commit(final=True)
            await loop.run_in_executor(self._kafka_thread, self._source.close)
            if self._callbacks is not None:
                await self._callbacks.stop()
            if self._media_http is not None:
                await self._media_http.aclose()
            await self.delivery.close()
            if self._relay_sink is not self._sink:
                await self._relay_sink.close()
            await self.watch.stop()
            self._kafka_thread.shutdown(wait=True)
        if self._fatal is not None:
            raise self._fatal

    def _offer(self, msg: Any) -> None:
        if msg.error():
            log.warning("consume error: %s", msg.error().str())
            return
        tp: TopicPartition = (msg.topic(), msg.partition())
        if tp not in self.epochs:
            return  # revoked while this batch was in hand
        if not self.tracker.track(tp, msg.offset()):
            return  # finished by the previous owner (commit metadata): not redone
        size = len(msg.value() or b"") + len(msg.key() or b"")
        self.scheduler.offer(Work(tp, msg.offset(), msg.key(), size, Received(msg, self.epochs.of(tp))))

    def _kick(self) -> None:
        """Dispatch on the next loop turn; completions in one turn share one pass."""
        if not self._kicked:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._start_ready)

    def _start_ready(self) -> None:
        self._kicked = False
        if self.stopping:
            return  # intake stopped: waiting records are left for redelivery
        if self._held_by_circuit():
            return
        while ready := self.scheduler.ready():
            for work in ready:
                self._start(work)
        metrics.IN_FLIGHT.set(self.scheduler.in_flight)
        metrics.IN_FLIGHT_BYTES.set(self.scheduler.in_flight_bytes)

    async def _apply_backpressure(self) -> None:
        pause, resume = self.scheduler.to_pause(), self.scheduler.to_resume()
        if pause or resume:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._kafka_thread, self._source.pause, pause)
            await loop.run_in_executor(self._kafka_thread, self._source.resume, resume)
            metrics.PAUSED.set(self.scheduler.paused)

    def _held_by_circuit(self) -> bool:
        """While a provider's circuit is open nothing new starts: records wait in the scheduler,
        partitions pause as it fills, and the poll loop retries each turn until a probe succeeds."""
        check = self.pipeline.open_circuit()
        if (check is not None) != self.intake_held:
            self.intake_held = check is not None
            metrics.INTAKE_HELD.set(int(self.intake_held))
            if self.intake_held:
                log.warning("provider circuit open: intake held until it closes", extra={"check": check})
            else:
                log.info("provider circuit closed: intake resumes")
        return self.intake_held

    def _start(self, work: Work[Received]) -> None:
        """Decode and validate here (poison becomes a dead letter); what needs no provider call is
        decided here too (no task); the rest runs as one task per record. Whatever goes wrong with
        one record ends as its dead letter: it never stops the service."""
        if self.outputs.redo(work):  # its outputs were refused before a rewind: answered by a letter
            return
        msg = work.payload.message
        upload_id: str | None = None
        try:
            check_record_size(work.size, self.settings.processing.max_record_bytes)
            event = self._decode(msg, work.tp)
            if isinstance(event, UploadEvent):
                upload_id = event.upload_id
                validate_upload(
                    event, msg.key(), inline_limit=self.settings.processing.inline_media_limit_bytes
                )
                source = SourcePosition(work.tp[0], work.tp[1], work.offset)
                verdict = self.pipeline.decide_now(event, source)
                if verdict is not None:
                    self.outputs.verdict(work, event, verdict)
                    return
        except Exception as exc:  # SerializationError and InvalidRecordError, or anything unforeseen
            self._record_failed(work, exc, upload_id)
            return
        task = asyncio.create_task(self._handle(work, event))
        self._running[task] = work

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
        self.outputs.dead_letter(
            work, Failure.of(exc, first_at_ms=started_ms or now, last_at_ms=now), upload_id
        )

    def _decode(self, msg: Any, tp: TopicPartition) -> object:
        schema = self._schemas.get(tp[0], "UploadEvent")
        try:
            return _RECORDS[schema](self.codec.decode(msg.value(), schema))
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"{schema} breaks its schema: {type(exc).__name__}: {exc}") from None

    async def _handle(self, work: Work[Received], event: object) -> None:
        upload_id = event.upload_id if isinstance(event, UploadEvent) else None
        started = _now_ms()
        try:
            if isinstance(event, UploadDeleted):
                await self.maintenance.on_deleted(event)
                self._finished(work)
            elif isinstance(event, ReviewDecision):
                await self.maintenance.on_review(event)
                self._finished(work)
            else:
                assert isinstance(event, UploadEvent)
                source = SourcePosition(work.tp[0], work.tp[1], work.offset)
                outcome = await self.pipeline.moderate(event, source)
                if isinstance(outcome, Rejected):
                    failure = Failure.of(
                        outcome.error,
                        attempts=outcome.attempts,
                        first_at_ms=outcome.started_ms,
                        last_at_ms=_now_ms(),
                    )
                    self.outputs.dead_letter(work, failure, event.upload_id)
                else:
                    self.outputs.verdict(work, event, outcome)
        except Exception as exc:  # one record's failure, whatever it is: its dead letter
            self._record_failed(work, exc, upload_id, started)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._running.pop(task, None)

    def _release_slot(self, work: Work[Received]) -> None:
        self.scheduler.done(work)
        self._kick()

    def _fail(self, exc: BaseException) -> None:
        self._fatal = self._fatal or exc

    @property
    def processed(self) -> int:
        return self.outputs.processed

    def _finished(self, work: Work[Received]) -> None:
        """Nothing to produce for this record: its offset is done now."""
        self._complete(work)
        self.scheduler.done(work)
        self._kick()

    def _current(self, work: Work[Received]) -> bool:
        """False for a result of an earlier assignment (revoked, lost or rewound since)."""
        return self.epochs.of(work.tp) == work.payload.epoch

    def _complete(self, work: Work[Received]) -> None:
        if self._current(work):
            self.tracker.complete(work.tp, work.offset)

    async def _commit_periodically(self, interval_s: float) -> None:
        """Commits run on their own clock: dispatch may be waiting for a free slot meanwhile."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.delivery.commit()
            except Exception as exc:
                # a committer that died quietly would stall the group's progress: stop loudly instead
                log.error("committing failed; stopping", exc_info=True)
                self._fatal = self._fatal or exc
                return
            self.watch.check()

    def committed(self, positions: dict[TopicPartition, Position]) -> None:
        if not positions:
            return
        self.tracker.mark_committed(positions)
        self.watch.commits.committed(list(positions))
        log.debug(
            "committed",
            extra={
                "positions": {f"{t}[{p}]": pos.offset for (t, p), pos in positions.items()},
                "with_map": sum(1 for pos in positions.values() if pos.metadata),
            },
        )

    async def _drain(self) -> None:
        """Stop intake, let running uploads finish within the drain deadline, then wait (within what
        is left of it) for the broker to acknowledge their verdicts so their offsets can commit."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        timeout = self.settings.processing.drain_timeout_s
        deadline = loop.time() + timeout
        running = set(self._running)
        if running:
            log.info("draining in-flight uploads", extra={"in_flight": len(running), "deadline_s": timeout})
            _, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("drain deadline passed; %d uploads left for redelivery", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        await self._sink.flush(max(1.0, deadline - loop.time()))
