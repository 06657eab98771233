"""Watching the service: stalled partitions, partitions that cannot commit, the answers of
``/healthz`` and ``/readyz`` (served by ``HealthServer``), and every ``OBSERVE_INTERVAL_S`` the
per-partition gauges (consumer lag in records and in time, records waiting) and the uploads appended
to the input topic. A part the service starts; it reads the
process's ``Progress`` and changes none of it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

from consumer.config import Settings
from consumer.core.offsets import TopicPartition
from consumer.core.stalls import StallDetector, positions_behind
from consumer.delivery.progress import Progress
from consumer.kafka.lag import Appended, LogOffsets, ages, lag, oldest_timestamps
from consumer.runtime import workers
from consumer.runtime.health import HealthServer, Probe, metrics_handler
from consumer.runtime.workers import Worker
from consumer.telemetry import metrics

__all__ = ["OBSERVE_INTERVAL_S", "Watch"]

log = logging.getLogger("consumer.watch")
OBSERVE_INTERVAL_S = 5.0  # per-partition gauges: one ListOffsets request per broker per round
CHECK_INTERVAL_S = 1.0  # stalls and partitions that cannot commit: a pass over the offsets held


class Watch:
    def __init__(self, settings: Settings, progress: Progress, worker: Worker) -> None:
        self._settings = settings
        self._progress = progress
        self._worker = worker
        self.stalls = StallDetector(settings.processing.stall_after_s)
        self.behind = StallDetector(settings.processing.stall_after_s)  # records wait, position still
        self.commits = progress.commits
        self._server: HealthServer | None = None
        self.port: int | None = None
        self._offsets = LogOffsets(settings.kafka)
        self._observer: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._shown: dict[str, set[TopicPartition]] = {"lag": set(), "lag_seconds": set(), "waiting": set()}
        self._appended = Appended()
        self._lag_failing = False

    async def start(self) -> None:
        """Serve ``/healthz``, ``/readyz`` and ``/metrics`` (under ``--workers``, worker 0 owns the
        configured port and its ``/metrics`` has every worker's series; the others listen on any
        free one, which they announce to it), and observe the partitions periodically."""
        self._observer = asyncio.create_task(self._observe_periodically())
        self._checker = asyncio.create_task(self._check_periodically())
        h = self._settings.health
        if not h.enabled:
            return
        self._server = HealthServer(
            h.host,
            h.port if self._worker.index == 0 else 0,
            alive=self.alive,
            ready=self.ready,
            metrics=metrics_handler(self._worker),
        )
        self.port = await self._server.start()
        workers.announce(self._worker, h.host, self.port)
        log.info("health server listening", extra={"port": self.port})

    async def stop(self) -> None:
        for task in (self._observer, self._checker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.stop()
        for gauge, shown in (
            (metrics.CONSUMER_LAG, "lag"),
            (metrics.CONSUMER_LAG_SECONDS, "lag_seconds"),
            (metrics.WAITING, "waiting"),
        ):
            self._shown[shown] = metrics.set_partitions(gauge, {}, self._shown[shown])

    async def _observe_periodically(self) -> None:
        while True:
            try:
                await self.observe()
            except Exception:  # the gauges are not worth the service: log, try again next round
                log.warning("observing the partitions failed", exc_info=True)
            await asyncio.sleep(OBSERVE_INTERVAL_S)

    async def _check_periodically(self) -> None:
        """``check`` on a clock of its own as well as after each commit round: a commit that hangs
        (an exactly_once commit waiting on acknowledgements while the brokers cannot take the
        outputs) must still turn ``/readyz`` false, and it is the commit rounds that stopped."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self.check()

    async def observe(self) -> None:
        """Per assigned partition: records waiting in the scheduler, the lag in time (the age of the
        oldest record held unfinished: one pass over the records held, bounded by the buffers) and the
        consumer lag (its log end minus the group's position); the series of partitions no longer
        assigned go. The input topic's log ends moving count as uploads appended."""
        s = self._progress
        assigned = set(s.epochs)
        waiting = {tp: n for tp, n in s.scheduler.queued_by_partition().items() if tp in assigned}
        waiting.update((tp, 0) for tp in assigned - waiting.keys())
        self._shown["waiting"] = metrics.set_partitions(metrics.WAITING, waiting, self._shown["waiting"])
        held = itertools.chain(s.running.values(), s.scheduler.waiting())
        oldest = oldest_timestamps((w.tp, w.payload.message) for w in held if w.tp in assigned)
        behind = ages(assigned, oldest, int(time.time() * 1000))
        self._shown["lag_seconds"] = metrics.set_partitions(
            metrics.CONSUMER_LAG_SECONDS, behind, self._shown["lag_seconds"]
        )
        try:
            ends = await self._offsets.query(assigned)
            positions = {tp: s.tracker.position(tp) for tp in ends}
            unknown = [tp for tp, position in positions.items() if position is None]
            starts = await self._offsets.query(unknown, end=False) if unknown else {}
        except Exception as exc:  # a broker away: the gauges keep their last values, the next round retries
            if not self._lag_failing:
                log.warning("cannot read the partitions' log end offsets: %s", exc)
            self._lag_failing = True
            return
        self._lag_failing = False
        uploads = self._settings.kafka.input_topic
        metrics.UPLOADS_APPENDED.inc(
            self._appended.update(
                {tp: end for tp, end in ends.items() if tp[0] == uploads},
                (tp for tp in s.epochs if tp[0] == uploads),
            )
        )
        current = lag(ends, positions, starts)
        still = set(s.epochs)  # revoked while the brokers answered: not shown
        current = {tp: n for tp, n in current.items() if tp in still}
        for tp in self.behind.observe(positions_behind(current, positions, starts), time.monotonic()):
            metrics.STALLS.inc()
            log.error(
                "partition not moving: records wait on it and its position has not moved for %.0fs",
                self.behind.after_s,
                extra={"topic": tp[0], "partition": tp[1]},
            )
        self._shown["lag"] = metrics.set_partitions(metrics.CONSUMER_LAG, current, self._shown["lag"])

    def alive(self) -> Probe:
        """Answered on the event loop, so an answer means the loop is responsive."""
        fatal = self._progress.fatal
        return Probe(fatal is None, {"fatal": None if fatal is None else type(fatal).__name__})

    def ready(self) -> Probe:
        s = self._progress
        since_poll = time.monotonic() - s.last_poll
        consuming = since_poll < self._settings.processing.stall_after_s and not s.stopping
        stalled = sorted(f"{t}[{p}]" for t, p in self.stalls.stalled | self.behind.stalled)
        not_committing = sorted(f"{t}[{p}]" for t, p in self.commits.stuck)
        return Probe(
            bool(s.assigned) and consuming and not stalled and not not_committing and s.fatal is None,
            {
                "assigned": s.assigned,
                "consuming": consuming,
                "seconds_since_poll": round(since_poll, 3),
                "stalled": stalled,
                "not_committing": not_committing,
            },
        )

    def check(self) -> None:
        """Called after each commit round: log and count partitions that became stalled or stuck."""
        now = time.monotonic()
        tracker = self._progress.tracker
        for tp in self.stalls.observe(tracker.oldest(), now):
            metrics.STALLS.inc()
            log.error(
                "partition stalled: its oldest record is unfinished after %.0fs",
                self.stalls.age(tp, now),
                extra={"topic": tp[0], "partition": tp[1], "intake_held": self._progress.intake_held},
            )
        for tp in self.commits.observe(tracker.uncommitted(), now):
            log.error(
                "partition cannot commit: nothing of it committed for %.0fs",
                self.commits.after_s,
                extra={"topic": tp[0], "partition": tp[1]},
            )
        metrics.STALLED.set(len(self.stalls.stalled | self.behind.stalled | self.commits.stuck))
