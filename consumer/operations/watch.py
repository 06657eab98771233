"""Watching the service: stalled partitions, partitions that cannot commit, and the answers of
``/healthz`` and ``/readyz`` (served by ``HealthServer``). A part the service starts; it reads the
service's state through ``Watched`` and changes none of it."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from consumer.config import Settings
from consumer.core.offsets import OffsetTracker
from consumer.core.stalls import CommitWatch, StallDetector
from consumer.operations.health import HealthServer, Probe
from consumer.operations.telemetry import metrics

__all__ = ["Watch", "Watched"]

log = logging.getLogger("consumer.watch")


class Watched(Protocol):
    """What the watch reads of the service."""

    tracker: OffsetTracker

    @property
    def assigned(self) -> int: ...

    @property
    def last_poll(self) -> float: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def fatal(self) -> BaseException | None: ...

    @property
    def intake_held(self) -> bool: ...


class Watch:
    def __init__(self, settings: Settings, service: Watched, worker: int = 0) -> None:
        self._settings = settings
        self._service = service
        self._worker = worker
        self.stalls = StallDetector(settings.processing.stall_after_s)
        self.commits = CommitWatch(settings.processing.stall_after_s)
        self._server: HealthServer | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Serve ``/healthz``, ``/readyz`` and ``/metrics`` (under ``--workers``, worker 0 owns the
        configured port; the others listen on any free one)."""
        h = self._settings.health
        if not h.enabled:
            return
        self._server = HealthServer(
            h.host, h.port if self._worker == 0 else 0, alive=self.alive, ready=self.ready
        )
        self.port = await self._server.start()
        log.info("health server listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    def alive(self) -> Probe:
        """Answered on the event loop, so an answer means the loop is responsive."""
        fatal = self._service.fatal
        return Probe(fatal is None, {"fatal": None if fatal is None else type(fatal).__name__})

    def ready(self) -> Probe:
        s = self._service
        since_poll = time.monotonic() - s.last_poll
        consuming = since_poll < self._settings.processing.stall_after_s and not s.stopping
        stalled = sorted(f"{t}[{p}]" for t, p in self.stalls.stalled)
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
        tracker = self._service.tracker
        for tp in self.stalls.observe(tracker.oldest(), now):
            metrics.STALLS.inc()
            log.error(
                "partition stalled: its oldest record is unfinished after %.0fs",
                self.stalls.age(tp, now),
                extra={"topic": tp[0], "partition": tp[1], "intake_held": self._service.intake_held},
            )
        for tp in self.commits.observe(tracker.uncommitted(), now):
            log.error(
                "partition cannot commit: nothing of it committed for %.0fs",
                self.commits.after_s,
                extra={"topic": tp[0], "partition": tp[1]},
            )
        metrics.STALLED.set(len(self.stalls.stalled | self.commits.stuck))
