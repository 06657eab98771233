"""The running service: consume uploads, moderate them concurrently (per-key order, bounded),
produce verdicts, and commit an input offset only after its verdict is acknowledged."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .config import Settings
from .errors import SerializationError
from .kafka import Sink, Source, ensure_topics
from .offsets import OffsetTracker, TopicPartition
from .pipeline import Checks, Pipeline, SourcePosition
from .policy import load_policy
from .providers.hive import HiveClassifier, HiveCustomIndex, HiveHashMatcher, HiveTransport
from .records import Decision, ModerationVerdict, UploadEvent
from .retry import RetryPolicy
from .serde import AvroCodec

__all__ = ["ModerationService", "build_pipeline"]

log = logging.getLogger("consumer.service")


def build_pipeline(settings: Settings, http: httpx.AsyncClient) -> Pipeline:
    """Providers from settings; a missing key for an enabled check is a ConfigError here, at start."""
    p = settings.processing
    retry = RetryPolicy(p.retry_attempts, p.retry_base_delay_s, p.retry_max_delay_s)

    def transport(check: str, key_name: str) -> HiveTransport:
        return HiveTransport(
            http, settings.hive.base_url, settings.hive.key(key_name), check, retry, settings.hive.timeout_s
        )

    checks = Checks(
        csam=HiveHashMatcher(transport("csam", "csam")),
        visual=HiveClassifier(transport("visual", "visual")),
        text=HiveClassifier(transport("text", "text")),
        similarity=HiveCustomIndex(transport("similarity", "index")) if p.similarity == "hive" else None,
    )
    return Pipeline(
        checks,
        load_policy(settings.policy_file),
        deadline_s=p.check_deadline_s,
        cache_size=p.result_cache_size,
    )


class ModerationService:
    def __init__(self, settings: Settings, pipeline: Pipeline, codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.codec = codec or AvroCodec()
        self.tracker = OffsetTracker()
        self._epochs: dict[TopicPartition, int] = {}
        self._slots = asyncio.Semaphore(settings.processing.max_in_flight)
        self._tails: dict[bytes | None, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-source")
        self._fatal: BaseException | None = None
        self.processed = 0

    # --- rebalance callbacks (run on the kafka thread inside consume) ------------------------
    def _on_assign(self, parts: list[TopicPartition]) -> None:
        for tp in parts:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1

    def _on_revoke(self, parts: list[TopicPartition]) -> None:
        # Commit what is finished; results of records still in flight are dropped by epoch and
        # those records are redelivered to the new owner (at-least-once).
        positions = {tp: off for tp, off in self.tracker.committable().items() if tp in parts}
        if positions and self._source.commit(positions):
            self.tracker.mark_committed(positions)
        for tp in parts:
            self.tracker.drop(tp)
            self._epochs[tp] = self._epochs.get(tp, 0) + 1

    # --- main loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        k = self.settings.kafka
        if k.create_topics:
            topics = [k.input_topic, k.verdict_topic, k.review_topic, k.escalation_topic, k.dlq_topic]
            await asyncio.to_thread(ensure_topics, k, topics)
        self._source = Source(k, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._sink = Sink(k)
        loop = asyncio.get_running_loop()
        committer = asyncio.create_task(self._commit_periodically(k.commit_interval_ms / 1000))
        log.info("consuming", extra={"topic": k.input_topic, "group": k.group_id})
        try:
            while not stop.is_set() and self._fatal is None:
                messages = await loop.run_in_executor(
                    self._kafka_thread, self._source.consume, self.settings.processing.max_poll_records, 0.1
                )
                for msg in messages:
                    if stop.is_set() or self._fatal is not None:
                        break  # not dispatched ⇒ not committed ⇒ redelivered after the restart
                    await self._dispatch(msg)
        finally:
            committer.cancel()
            await self._drain()
            await self._commit(asynchronous=False)
            await loop.run_in_executor(self._kafka_thread, self._source.close)
            await asyncio.to_thread(self._sink.close)
            self._kafka_thread.shutdown(wait=True)
        if self._fatal is not None:
            raise self._fatal

    async def _dispatch(self, msg: Any) -> None:
        if msg.error():
            log.warning("consume error: %s", msg.error().str())
            return
        tp: TopicPartition = (msg.topic(), msg.partition())
        self.tracker.track(tp, msg.offset())
        await self._slots.acquire()
        key = msg.key()
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done
        task = asyncio.create_task(self._handle(msg, tp, self._epochs.get(tp, 0), previous, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(
        self,
        msg: Any,
        tp: TopicPartition,
        epoch: int,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None],
    ) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)  # same key: wait for the earlier record
            await self._process(msg, tp)
            if self._epochs.get(tp, 0) == epoch:
                self.tracker.complete(tp, msg.offset())
        except Exception as exc:
            # Anything unexpected (the broker refusing the verdict, a bug) must not lose the upload:
            # stop without committing past it; the restarted process redoes it.
            log.error(
                "processing failed; stopping without committing past it",
                exc_info=True,
                extra={"topic": tp[0], "partition": tp[1], "offset": msg.offset()},
            )
            self._fatal = self._fatal or exc
        finally:
            done.set_result(None)
            if self._tails.get(msg.key()) is done:
                del self._tails[msg.key()]
            self._slots.release()

    async def _process(self, msg: Any, tp: TopicPartition) -> None:
        try:
            upload = UploadEvent.from_avro(self.codec.decode(msg.value(), "UploadEvent"))
        except (SerializationError, KeyError, ValueError, TypeError) as exc:
            log.error(
                "skipping undecodable upload record: %s",
                exc,
                extra={
                    "topic": tp[0],
                    "partition": tp[1],
                    "offset": msg.offset(),
                    "error_class": "SerializationError",
                },
            )
            return
        verdict = await self.pipeline.moderate(upload, SourcePosition(tp[0], tp[1], msg.offset()))
        await self._publish(verdict, msg.key() or upload.upload_id.encode())
        self.processed += 1
        log.info(
            "verdict",
            extra={
                "upload_id": upload.upload_id,
                "decision": verdict.decision.value,
                "reasons": [r.label for r in verdict.reasons],
            },
        )

    async def _publish(self, verdict: ModerationVerdict, key: bytes) -> None:
        k = self.settings.kafka
        value = self.codec.encode("ModerationVerdict", verdict.to_avro())
        sends = [self._sink.send(k.verdict_topic, key, value)]
        if verdict.decision is Decision.REVIEW:
            sends.append(self._sink.send(k.review_topic, key, value))
        elif verdict.decision is Decision.ESCALATE:
            sends.append(self._sink.send(k.escalation_topic, key, value))
        await asyncio.gather(*sends)

    async def _commit_periodically(self, interval_s: float) -> None:
        """Commits run on their own clock: dispatch may be waiting for a free slot meanwhile."""
        while True:
            await asyncio.sleep(interval_s)
            await self._commit(asynchronous=True)

    async def _commit(self, *, asynchronous: bool) -> None:
        positions = self.tracker.committable()
        if not positions:
            return
        ok = await asyncio.get_running_loop().run_in_executor(
            self._kafka_thread, lambda: self._source.commit(positions, asynchronous=asynchronous)
        )
        if ok:
            self.tracker.mark_committed(positions)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        deadline = self.settings.processing.drain_timeout_s
        log.info("draining in-flight uploads", extra={"in_flight": len(self._tasks), "deadline_s": deadline})
        _, pending = await asyncio.wait(set(self._tasks), timeout=deadline)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("drain deadline passed; %d uploads left for redelivery", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
