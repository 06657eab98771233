"""``run --workers N``: N worker processes in one consumer group (one per core), under a supervisor
that restarts a crashed worker and, on SIGTERM/SIGINT, has every worker drain and stop. Each worker
learns its index, the number of workers and a directory, shared by the workers, where each
announces where its ``/metrics`` is (``runtime/workers``: worker 0's ``/metrics`` has every
worker's series), from its command line (``worker_arguments``); the supervisor removes the
directory when it stops."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess  # nosec B404  # starts its own worker processes: fixed argv, never a shell
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from consumer.runtime.workers import Worker

__all__ = ["supervise", "worker_arguments"]

log = logging.getLogger("consumer.supervisor")


def worker_arguments(worker: Worker) -> list[str]:
    """The options of ``run`` that tell a worker its place (``cli`` reads them back)."""
    directory = [] if worker.directory is None else ["--workers-dir", str(worker.directory)]
    return ["--worker-index", str(worker.index), "--worker-count", str(worker.count), *directory]


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


def supervise(workers: int, worker_args: list[str], stop_grace_s: float) -> int:
    """Run until a stop signal; returns 0 after a clean stop."""
    directory = tempfile.mkdtemp(prefix="moderation-workers-")
    try:
        return _supervise(workers, worker_args, stop_grace_s, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _supervise(workers: int, worker_args: list[str], stop_grace_s: float, directory: str) -> int:
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("stopping workers", extra={"signal": signal.Signals(signum).name})
        stopping = True
        for w in pool:
            if w.process and w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)

    def forward(signum: int, _: FrameType | None) -> None:
        for w in pool:  # SIGHUP: every worker reloads its policy and secret files
            if w.process and w.process.poll() is None:
                w.process.send_signal(signum)

    pool = [_Worker(i) for i in range(workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, forward)
    for w in pool:
        _start(w, worker_args, workers, directory)
    while not stopping:
        now = time.monotonic()
        for w in pool:
            code = w.process.poll() if w.process else None
            if w.process is not None and code is not None and not stopping:
                # a worker that lived a while gets restarted at once; a crash loop backs off
                w.restarts = 0 if now - w.started_at > 60 else w.restarts + 1
                w.next_start = now + min(30.0, 0.5 * 2**w.restarts) if w.restarts else now
                log.error(
                    "worker exited; restarting",
                    extra={
                        "worker": w.index,
                        "exit_code": code,
                        "restart_in_s": round(w.next_start - now, 1),
                    },
                )
                w.process = None
            if w.process is None and now >= w.next_start and not stopping:
                _start(w, worker_args, workers, directory)
        time.sleep(0.2)
    deadline = time.monotonic() + stop_grace_s
    for w in pool:
        if w.process is None:
            continue
        try:
            w.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker did not stop in time; killing it", extra={"worker": w.index})
            w.process.kill()
            w.process.wait()
    log.info("all workers stopped")
    return 0


def _start(w: _Worker, worker_args: list[str], count: int, directory: str) -> None:
    place = worker_arguments(Worker(w.index, count, Path(directory)))
    w.process = subprocess.Popen([sys.executable, "-m", "consumer", "run", *worker_args, *place])  # nosec B603  # this interpreter; arguments from the operator's own command line; no shell
    w.started_at = time.monotonic()
    log.info("worker started", extra={"worker": w.index, "pid": w.process.pid})
