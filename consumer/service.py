"""The running service: consume uploads, moderate them concurrently (per-key order, bounded),
produce verdicts, and commit an input offset only after its verdict is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from consumer.callbacks.receiver import CallbackServer, Correlator
from consumer.checks.builtin import default_registry
from consumer.checks.maintenance import IndexMaintenance
from consumer.checks.registry import CheckRegistry, Feeds
from consumer.config import Settings
from consumer.core.epochs import Epochs
from consumer.core.headers import measure
from consumer.core.offsets import OffsetTracker, Position, TopicPartition
from consumer.core.scheduler import Scheduler, Work
from consumer.core.stalls import CommitWatch
from consumer.delivery.drain import drain
from consumer.delivery.outputs import Outputs, Received
from consumer.delivery.partitions import Partitions
from consumer.delivery.strategies import commit_periodically, delivery_for
from consumer.handling import RecordHandler
from consumer.kafka import Sink, Source, ensure_topics, output_limit
from consumer.policy.reload import PolicyReloader
from consumer.policy.shadow import Shadow
from consumer.policy.tenants import PolicyStore
from consumer.runtime.supervisor import worker_index
from consumer.runtime.watch import Watch
from consumer.schema_registry import codec_for, output_schemas, prepare_outputs
from consumer.serde import Codec
from consumer.telemetry import metrics
from consumer.transports.httpclient import HttpClient
from consumer.wiring import build_pipeline, check_settings, media_client

__all__ = ["ModerationService"]

log = logging.getLogger("consumer.service")
T = TypeVar("T")


class ModerationService:
    """Owns the Kafka clients, the callback receiver and the pipeline for one process."""

    def __init__(
        self,
        settings: Settings,
        http: HttpClient,
        codec: Codec | None = None,
        *,
        policy: PolicyStore | None = None,
        registry: CheckRegistry | None = None,
    ) -> None:
        """``policy``: what ``wiring.check_settings`` returned, if the caller checked already;
        ``registry``: the checks there are (default: the shipped and the installed ones)."""
        self.settings = settings
        self.registry = registry or default_registry()
        self.http = http
        self._policy = policy
        self._worker = worker_index()
        self.correlator = Correlator()
        self._callbacks: CallbackServer | None = None
        self.codec = codec or codec_for(settings)
        self._owns_codec = codec is None
        self._registry_wait = settings.schema_registry.retry_max_delay_s
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
        self.running: dict[asyncio.Task[None], Work[Received]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-source")
        self.fatal: BaseException | None = None
        self.stopping = self._kicked = self.intake_held = False
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

    @property
    def commit_watch(self) -> CommitWatch:
        return self.watch.commits

    async def in_kafka_thread(self, call: Callable[[], T]) -> T:
        """Every consumer call runs on one thread (confluent-kafka's consumer is not thread-safe)."""
        return await asyncio.get_running_loop().run_in_executor(self._kafka_thread, call)

    @property
    def callback_url(self) -> str | None:
        return None if self._callbacks is None else self._callbacks.url

    # --- main loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        k = self.settings.kafka
        policy = self._policy or check_settings(self.settings, self.registry)
        if k.create_topics:
            await asyncio.to_thread(ensure_topics, k, k.all_topics())
        outputs = output_schemas(k, shadow=policy.shadow is not None)
        try:
            await prepare_outputs(self.codec, outputs, stop, self._registry_wait)
        except BaseException:  # e.g. schemas not registered: nothing else was started yet
            self._close_codec()
            raise
        self.delivery = delivery_for(self.settings, self, worker_index())
        await self.delivery.start()
        self._sink = self.delivery.sink
        # callbacks are relayed outside any transaction
        self._relay_sink = Sink(k) if self.exactly_once else self._sink
        self._relay_sink.start()
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
            shadow=Shadow(policy, self.registry.fed(Feeds.SIMILARITY)) if policy.shadow else None,
            max_header_count=self.settings.processing.max_header_count,
            max_header_bytes=self.settings.processing.max_header_bytes,
        )
        self.policies = PolicyReloader(self.settings, policy, self.registry)
        loop = self._loop = asyncio.get_running_loop()
        tasks = None
        if self.settings.processing.async_media:
            self._callbacks = CallbackServer(self.settings, self._relay_sink, self.correlator, self._worker)
            tasks = await self._callbacks.start(loop)
        self._media_http = media_client(self.settings)
        media, checks = self._media_http, self.registry
        self.pipeline = build_pipeline(
            self.settings, self.http, tasks, media_http=media, policy=policy, registry=checks
        )
        self.maintenance = IndexMaintenance(self.pipeline.index)
        self.handler = RecordHandler(
            self.settings.processing,
            self.codec,
            self.pipeline,
            self.maintenance,
            self.outputs,
            {k.deleted_topic: "UploadDeleted", k.review_decision_topic: "ReviewDecision"},
            finished=self._finished,
            spawn=self._spawn,
            registry_max_delay_s=self._registry_wait,
            group=k.group_id,
        )
        partitions = Partitions(self, loop, self.settings.processing.revoke_drain_s)
        self._source = Source(
            k,
            [k.input_topic, k.deleted_topic, k.review_decision_topic],
            on_assign=partitions.on_assign,
            on_revoke=partitions.on_revoke,
            on_lost=partitions.on_lost,
            prefetch_bytes=self.settings.processing.max_buffered_bytes,
        )
        await asyncio.gather(self.watch.start(), self.policies.start())
        committer = asyncio.create_task(commit_periodically(self.delivery, self.watch.check, self._fail))
        what = {"topic": k.input_topic, "group": k.group_id, "delivery": self.settings.processing.delivery}
        log.info("consuming", extra=what)
        try:
            while not stop.is_set() and self.fatal is None:
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
            self.stopping = True  # intake stops; waiting records are left for redelivery
            await drain(set(self.running), self._sink, self.settings.processing.drain_timeout_s)
            await self.delivery.commit(final=True)
            await loop.run_in_executor(self._kafka_thread, self._source.close)
            if self._callbacks is not None:
                await self._callbacks.stop()
            if self._media_http is not None:
                await self._media_http.aclose()
            await self.delivery.close()
            if self._relay_sink is not self._sink:
                await self._relay_sink.close()
            await asyncio.gather(self.watch.stop(), self.policies.stop())
            self._kafka_thread.shutdown(wait=True)
            self._close_codec()
        if self.fatal is not None:
            raise self.fatal

    def _close_codec(self) -> None:
        if self._owns_codec:
            self.codec.close()

    def _offer(self, msg: Any) -> None:
        if msg.error():
            log.warning("consume error: %s", msg.error().str())
            return
        tp: TopicPartition = (msg.topic(), msg.partition())
        if tp not in self.epochs:
            return  # revoked while this batch was in hand
        if not self.tracker.track(tp, msg.offset()):
            return  # finished by the previous owner (commit metadata): not redone
        headers = msg.headers()  # a new list of copies on every call: once per record
        count, header_bytes = measure(headers) if headers else (0, 0)
        key = msg.key()
        size = len(msg.value() or b"") + len(key or b"") + header_bytes  # every byte counts
        received = Received(msg, self.epochs.of(tp), count, header_bytes)
        self.scheduler.offer(Work(tp, msg.offset(), key, size, received))

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
                self.handler.start(work)
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
        """While a provider's circuit is open, or the schema registry is unreachable, nothing new
        starts: records wait in the scheduler, partitions pause as it fills, the loop retries."""
        check = self.pipeline.open_circuit() or ("schema_registry" if self.handler.registry_down else None)
        if (check is not None) != self.intake_held:
            self.intake_held = check is not None
            metrics.INTAKE_HELD.set(int(self.intake_held))
            held = (
                f"{check} unavailable: intake held until it is back" if self.intake_held else "intake resumes"
            )
            log.log(logging.WARNING if self.intake_held else logging.INFO, held)
        return self.intake_held

    def _spawn(self, work: Work[Received], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.running[task] = work
        task.add_done_callback(self.running.pop)

    def _release_slot(self, work: Work[Received]) -> None:
        self.scheduler.done(work)
        self._kick()

    def _fail(self, exc: BaseException) -> None:
        self.fatal = self.fatal or exc

    @property
    def processed(self) -> int:
        outputs = getattr(self, "outputs", None)  # None until the run has started its outputs
        return 0 if outputs is None else outputs.processed

    def _finished(self, work: Work[Received]) -> None:
        """Nothing to produce for this record: its offset is done now."""
        self._complete(work)
        self._release_slot(work)

    def _current(self, work: Work[Received]) -> bool:
        """False for a result of an earlier assignment (revoked, lost or rewound since)."""
        return self.epochs.of(work.tp) == work.payload.epoch

    def _complete(self, work: Work[Received]) -> None:
        if self._current(work):
            self.tracker.complete(work.tp, work.offset)

    def committed(self, positions: dict[TopicPartition, Position]) -> None:
        if not positions:
            return
        self.tracker.mark_committed(positions)
        self.watch.commits.committed(list(positions))
        offsets = {f"{t}[{p}]": pos.offset for (t, p), pos in positions.items()}
        with_map = sum(1 for pos in positions.values() if pos.metadata)
        log.debug("committed", extra={"positions": offsets, "with_map": with_map})
