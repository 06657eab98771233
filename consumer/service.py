"""The loop of one process: consume uploads, moderate them concurrently (per-key order, bounded),
produce verdicts, and commit an input offset only after its verdict is acknowledged. Every part it
drives is built and closed by ``wiring``; this module is the loop and nothing else."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from consumer.core.headers import measure
from consumer.core.offsets import TopicPartition
from consumer.core.scheduler import Work
from consumer.delivery.drain import Flushable, drain
from consumer.delivery.outputs import Received
from consumer.delivery.progress import Progress
from consumer.delivery.strategies import Delivery, commit_periodically
from consumer.settings_sections import ProcessingSettings
from consumer.telemetry import metrics

__all__ = ["Intake", "ModerationService", "Starter"]

log = logging.getLogger("consumer.service")


class Intake(Protocol):
    """What the loop asks of the consumer (``kafka.Source``)."""

    def consume(self, max_records: int, timeout: float) -> list[Any]: ...

    def pause(self, parts: list[TopicPartition]) -> None: ...

    def resume(self, parts: list[TopicPartition]) -> None: ...

    def close(self) -> None: ...

    async def in_thread(self, call: Callable[[], Any]) -> Any: ...


class Starter(Protocol):
    """Starts one record's handling (``handling.RecordHandler``)."""

    def start(self, work: Work[Received]) -> None: ...


class ModerationService:
    def __init__(
        self,
        processing: ProcessingSettings,
        progress: Progress,
        source: Intake,
        delivery: Delivery,
        handler: Starter,
        *,
        held_by: Callable[[], str | None],
        after_commit: Callable[[], None],
        description: dict[str, str],
    ) -> None:
        """``held_by``: the dependency that is away (a provider's open circuit, the schema
        registry), if any: nothing new starts meanwhile; ``after_commit``: runs after each commit
        round (the watch's stall checks); ``description``: logged when consuming starts."""
        self._processing = processing
        self.progress = progress
        self._source = source
        self._delivery = delivery
        self._handler = handler
        self._held_by = held_by
        self._after_commit = after_commit
        self._description = description
        self._kicked = False
        progress.on_free(self._kick)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` or a fatal error: poll, offer, dispatch, pause what is full. Then intake
        stops, what runs drains (``drain_timeout_s``), the finished offsets are committed and the
        consumer closes; the fatal error, if any, is raised."""
        p, progress, source = self._processing, self.progress, self._source
        committer = asyncio.create_task(
            commit_periodically(self._delivery, self._after_commit, progress.fail)
        )
        log.info("consuming", extra=self._description)
        try:
            while not stop.is_set() and progress.fatal is None:
                messages = await source.in_thread(lambda: source.consume(p.max_poll_records, 0.1))
                progress.last_poll = time.monotonic()
                if self._delivery.rewind_needed:
                    await self._delivery.rewind()  # the batch in hand predates the rewind: read again
                    continue
                for msg in messages:
                    self._offer(msg)
                self._start_ready()
                await self._apply_backpressure()
        finally:
            committer.cancel()
            progress.stopping = True  # intake stops; waiting records are left for redelivery
            sink: Flushable = self._delivery.sink
            await drain(set(progress.running), sink, p.drain_timeout_s)
            await self._delivery.commit(final=True)
            await source.in_thread(source.close)
        if progress.fatal is not None:
            raise progress.fatal

    def _offer(self, msg: Any) -> None:
        if msg.error():
            log.warning("consume error: %s", msg.error().str())
            return
        progress = self.progress
        tp: TopicPartition = (msg.topic(), msg.partition())
        if tp not in progress.epochs:
            return  # revoked while this batch was in hand
        if not progress.tracker.track(tp, msg.offset()):
            return  # finished by the previous owner (commit metadata): not redone
        headers = msg.headers()  # a new list of copies on every call: once per record
        count, header_bytes = measure(headers) if headers else (0, 0)
        key = msg.key()
        size = len(msg.value() or b"") + len(key or b"") + header_bytes  # every byte counts
        received = Received(msg, progress.epochs.of(tp), count, header_bytes)
        progress.scheduler.offer(Work(tp, msg.offset(), key, size, received))

    def _kick(self) -> None:
        """Dispatch on the next loop turn; completions in one turn share one pass."""
        if not self._kicked:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._start_ready)

    def _start_ready(self) -> None:
        self._kicked = False
        progress = self.progress
        if progress.stopping:
            return  # intake stopped: waiting records are left for redelivery
        if self._held():
            return
        scheduler = progress.scheduler
        while ready := scheduler.ready():
            for work in ready:
                self._handler.start(work)
        metrics.IN_FLIGHT.set(scheduler.in_flight)
        metrics.IN_FLIGHT_BYTES.set(scheduler.in_flight_bytes)

    async def _apply_backpressure(self) -> None:
        scheduler, source = self.progress.scheduler, self._source
        pause, resume = scheduler.to_pause(), scheduler.to_resume()
        if pause or resume:
            await source.in_thread(lambda: source.pause(pause))
            await source.in_thread(lambda: source.resume(resume))
            metrics.PAUSED.set(scheduler.paused)

    def _held(self) -> bool:
        """While a provider's circuit is open, or the schema registry is unreachable, nothing new
        starts: records wait in the scheduler, partitions pause as it fills, the loop retries."""
        progress = self.progress
        away = self._held_by()
        if (away is not None) != progress.intake_held:
            progress.intake_held = away is not None
            metrics.INTAKE_HELD.set(int(progress.intake_held))
            held = f"{away} unavailable: intake held until it is back" if away else "intake resumes"
            log.log(logging.WARNING if away else logging.INFO, held)
        return progress.intake_held
