"""The running service: consume uploads, moderate them concurrently (per-key order, bounded),
produce verdicts, and commit an input offset only after its verdict is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web
from confluent_kafka import KafkaException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .callbacks import AsyncTasks, CallbackReceiver, Correlator, RelayListener, kafka_relay
from .config import Settings
from .errors import SerializationError
from .httpclient import HttpClient
from .kafka import Sink, Source, ensure_topics
from .kafka.sink import DeliveryError
from .maintenance import IndexMaintenance
from .offsets import OffsetTracker, Position, TopicPartition
from .pipeline import SourcePosition
from .records import Decision, ModerationVerdict, ReviewDecision, UploadDeleted, UploadEvent
from .scheduler import Mode, Scheduler, Work
from .serde import AvroCodec
from .telemetry import metrics
from .wiring import build_pipeline, check_settings

__all__ = ["ModerationService"]

log = logging.getLogger("consumer.service")
T = TypeVar("T")

_RECORDS: dict[str, Callable[[dict[str, Any]], object]] = {
    "UploadEvent": UploadEvent.from_avro,
    "UploadDeleted": UploadDeleted.from_avro,
    "ReviewDecision": ReviewDecision.from_avro,
}


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"content-type": CONTENT_TYPE_LATEST})


class ModerationService:
    """Owns the Kafka clients, the callback receiver and the pipeline for one process."""

    def __init__(self, settings: Settings, http: HttpClient, codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.http = http
        self.correlator = Correlator()
        self.callback_url: str | None = None
        self._web: web.AppRunner | None = None
        self._relay: RelayListener | None = None
        self.codec = codec or AvroCodec()
        self.tracker = OffsetTracker()
        p = settings.processing
        self.scheduler = Scheduler(
            Mode(p.ordering),
            max_records=p.max_in_flight,
            max_bytes=p.max_in_flight_bytes,
            pause_at=p.partition_buffer,
            max_buffered_bytes=p.max_buffered_bytes,
        )
        self._epochs: dict[TopicPartition, int] = {}
        self._running: dict[asyncio.Task[None], Work] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-source")
        self._fatal: BaseException | None = None
        self._stopping = False
        self._kicked = False
        self._held = False
        self._schemas: dict[str, str] = {}
        self.processed = 0

    # --- rebalance callbacks (on the kafka thread, inside consume; state changes go to the loop) --
    def _on_assign(self, parts: list[TopicPartition]) -> None:
        try:
            committed = self._source.committed(parts)
        except KafkaException as exc:  # the map is an optimisation: without it finished work is redone
            log.warning("cannot read committed positions: %s", exc.args[0].str())
            committed = {}
        self._on_loop(self._assigned(parts, committed))

    async def _assigned(self, parts: list[TopicPartition], committed: dict[TopicPartition, Position]) -> None:
        for tp in parts:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
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
        metrics.ASSIGNED.set(len(self._epochs))

    def _on_revoke(self, parts: list[TopicPartition]) -> None:
        """Cooperative revocation: drain what runs for these partitions (bounded), commit, let go."""
        positions = self._on_loop(self._release(parts, drain_s=self.settings.processing.revoke_drain_s))
        if positions:
            self._source.commit(positions)

    def _on_lost(self, parts: list[TopicPartition]) -> None:
        """Lost (another member owns them already): drop everything, commit nothing."""
        self._on_loop(self._release(parts, drain_s=0.0, commit=False))

    async def _release(
        self, parts: list[TopicPartition], drain_s: float, commit: bool = True
    ) -> dict[TopicPartition, Position]:
        mine = set(parts)
        running = [task for task, work in self._running.items() if work.tp in mine]
        if drain_s > 0:
            deadline = asyncio.get_running_loop().time() + drain_s
            if running:
                await asyncio.wait(running, timeout=drain_s)
            await self._sink.flush(max(0.0, deadline - asyncio.get_running_loop().time()))
        positions = (
            {tp: pos for tp, pos in self.tracker.committable().items() if tp in mine} if commit else {}
        )
        for tp in parts:
            self.scheduler.drop(tp)  # waiting records: never started, redelivered to the next owner
            self.tracker.drop(tp)
            self._epochs.pop(tp, None)  # results still in flight for it are discarded
        metrics.REBALANCES.inc()
        metrics.ASSIGNED.set(len(self._epochs))
        return positions

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # --- main loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        k = self.settings.kafka
        check_settings(self.settings)
        if k.create_topics:
            await asyncio.to_thread(ensure_topics, k, k.all_topics())
        self._sink = Sink(k)
        self._sink.start()
        self._schemas = {k.deleted_topic: "UploadDeleted", k.review_decision_topic: "ReviewDecision"}
        loop = self._loop = asyncio.get_running_loop()
        tasks = await self._start_callbacks(loop)
        self.pipeline = build_pipeline(self.settings, self.http, tasks)
        self.maintenance = IndexMaintenance(self.pipeline.checks.similarity)
        self._source = Source(
            k,
            [k.input_topic, k.deleted_topic, k.review_decision_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        committer = asyncio.create_task(self._commit_periodically(k.commit_interval_ms / 1000))
        log.info("consuming", extra={"topic": k.input_topic, "group": k.group_id})
        try:
            while not stop.is_set() and self._fatal is None:
                messages = await loop.run_in_executor(
                    self._kafka_thread, self._source.consume, self.settings.processing.max_poll_records, 0.1
                )
                for msg in messages:
                    self._offer(msg)
                self._start_ready()
                await self._apply_backpressure()
        finally:
            committer.cancel()
            await self._drain()
            await self._commit(asynchronous=False)
            await loop.run_in_executor(self._kafka_thread, self._source.close)
            await self._stop_callbacks()
            await self._sink.close()
            self._kafka_thread.shutdown(wait=True)
        if self._fatal is not None:
            raise self._fatal

    async def _start_callbacks(self, loop: asyncio.AbstractEventLoop) -> AsyncTasks | None:
        """The HTTP receiver (callbacks, /metrics, /healthz) and the relay listener, when async tasks
        are used; intake starts only once the relay listens, so no callback can slip past."""
        c, k = self.settings.callbacks, self.settings.kafka
        if not self.settings.processing.async_media:
            return None
        token = c.token.get_secret_value() if c.token else secrets.token_urlsafe(24)
        if c.token is None:
            log.warning(
                "callbacks.token is not set: using a random one, so callbacks only work while this"
                " process lives; give every process of the group the same token"
            )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        CallbackReceiver(token, kafka_relay(self._sink, k.callback_topic)).routes(app)
        app.router.add_get("/metrics", _metrics)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        # Under --workers, worker 0 owns the configured port; the others listen on any free port and
        # advertise worker 0's, since a callback reaching any process is relayed to all of them.
        worker = int(os.environ.get("MODERATION_WORKER_INDEX", "0"))
        site = web.TCPSite(self._web, c.host, c.port if worker == 0 else 0)
        await site.start()
        port = c.port if worker > 0 and c.port else int(self._web.addresses[0][1])
        base = c.public_url or f"http://{'127.0.0.1' if c.host in ('0.0.0.0', '::') else c.host}:{port}"
        self.callback_url = f"{base.rstrip('/')}/callbacks/{token}"
        self._relay = RelayListener(k, self.correlator, loop)
        self._relay.start()
        if not await asyncio.to_thread(self._relay.assigned.wait, 60):
            raise RuntimeError(f"callback relay topic {k.callback_topic} was not assigned within 60s")
        log.info("callback receiver listening", extra={"port": port, "relay_topic": k.callback_topic})
        return AsyncTasks(
            self.correlator, self.callback_url, poll_after_s=c.poll_after_s, poll_interval_s=c.poll_interval_s
        )

    async def _stop_callbacks(self) -> None:
        if self._relay is not None:
            await asyncio.to_thread(self._relay.stop)
        if self._web is not None:
            await self._web.cleanup()

    def _offer(self, msg: Any) -> None:
        if msg.error():
            log.warning("consume error: %s", msg.error().str())
            return
        tp: TopicPartition = (msg.topic(), msg.partition())
        if tp not in self._epochs:
            return  # revoked while this batch was in hand
        if not self.tracker.track(tp, msg.offset()):
            return  # finished by the previous owner (commit metadata): not redone
        size = len(msg.value() or b"") + len(msg.key() or b"")
        self.scheduler.offer(Work(tp, msg.offset(), msg.key(), size, (msg, self._epochs[tp])))

    def _kick(self) -> None:
        """Dispatch on the next loop turn; completions in one turn share one pass."""
        if not self._kicked:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._start_ready)

    def _start_ready(self) -> None:
        self._kicked = False
        if self._stopping:
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
        if (check is not None) != self._held:
            self._held = check is not None
            metrics.INTAKE_HELD.set(int(self._held))
            if self._held:
                log.warning("provider circuit open: intake held until it closes", extra={"check": check})
            else:
                log.info("provider circuit closed: intake resumes")
        return self._held

    def _start(self, work: Work) -> None:
        """Decode here; what needs no provider call is decided here too (no task); the rest runs as
        one task per record."""
        msg = work.payload[0]
        event = self._decode(msg, work.tp)
        if event is None:
            self._finished(work)
            return
        if isinstance(event, UploadEvent):
            verdict = self.pipeline.decide_now(event, SourcePosition(work.tp[0], work.tp[1], work.offset))
            if verdict is not None:
                self._emit(work, event, verdict)
                return
        task = asyncio.create_task(self._handle(work, event))
        self._running[task] = work

    def _decode(self, msg: Any, tp: TopicPartition) -> object | None:
        schema = self._schemas.get(tp[0], "UploadEvent")
        try:
            return _RECORDS[schema](self.codec.decode(msg.value(), schema))
        except (SerializationError, KeyError, ValueError, TypeError) as exc:
            log.error(
                "skipping undecodable %s record: %s",
                schema,
                exc,
                extra={
                    "topic": tp[0],
                    "partition": tp[1],
                    "offset": msg.offset(),
                    "error_class": "SerializationError",
                },
            )
            return None

    async def _handle(self, work: Work, event: object) -> None:
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
                self._emit(work, event, await self.pipeline.moderate(event, source))
        except Exception as exc:
            # Anything unexpected (the broker refusing the verdict, a bug) must not lose the upload:
            # stop without committing past it; the restarted process redoes it.
            log.error(
                "processing failed; stopping without committing past it",
                exc_info=True,
                extra={"topic": work.tp[0], "partition": work.tp[1], "offset": work.offset},
            )
            self._fatal = self._fatal or exc
            self.scheduler.done(work)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._running.pop(task, None)

    def _finished(self, work: Work) -> None:
        """Nothing to produce for this record: its offset is done now."""
        self._complete(work)
        self.scheduler.done(work)
        self._kick()

    def _complete(self, work: Work) -> None:
        if self._epochs.get(work.tp) == work.payload[1]:  # else revoked meanwhile: a late result
            self.tracker.complete(work.tp, work.offset)

    def _emit(self, work: Work, upload: UploadEvent, verdict: ModerationVerdict) -> None:
        """Produce the verdict (to the verdict topic, and the review or escalation topic); the input
        offset completes when the broker has acknowledged every copy. The key's next record may start
        now: the producer keeps their verdicts in order."""
        k = self.settings.kafka
        key = work.key or upload.upload_id.encode()
        value = self.codec.encode("ModerationVerdict", verdict.to_avro())
        topics = [k.verdict_topic]
        if verdict.decision is Decision.REVIEW:
            topics.append(k.review_topic)
        elif verdict.decision is Decision.ESCALATE:
            topics.append(k.escalation_topic)
        remaining = len(topics)

        def acknowledged(err: DeliveryError | None) -> None:
            nonlocal remaining
            if err is not None:
                log.error(
                    "verdict not acknowledged; stopping: %s", err, extra={"upload_id": upload.upload_id}
                )
                self._fatal = self._fatal or err
                return
            remaining -= 1
            if remaining == 0:
                self._complete(work)

        try:
            for topic in topics:
                self._sink.produce(topic, key, value, on_delivery=acknowledged)
        except DeliveryError as exc:  # refused locally: never completes, so nothing commits past it
            acknowledged(exc)
            return
        finally:
            self.scheduler.done(work)
            self._kick()
        metrics.child(metrics.VERDICTS, verdict.decision.value).inc()
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

    async def _commit_periodically(self, interval_s: float) -> None:
        """Commits run on their own clock: dispatch may be waiting for a free slot meanwhile."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._commit(asynchronous=True)
            except Exception as exc:
                # a committer that died quietly would stall the group's progress: stop loudly instead
                log.error("committing failed; stopping", exc_info=True)
                self._fatal = self._fatal or exc
                return

    async def _commit(self, *, asynchronous: bool) -> None:
        positions = self.tracker.committable()
        for tp in self.tracker.partitions():
            self.scheduler.narrow(tp, self.tracker.window_end(tp))
        if not positions:
            return
        ok = await asyncio.get_running_loop().run_in_executor(
            self._kafka_thread, lambda: self._source.commit(positions, asynchronous=asynchronous)
        )
        if ok:
            self.tracker.mark_committed(positions)
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
        self._stopping = True
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
