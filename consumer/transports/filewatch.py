"""Files looked at for a change while the service runs: the policy files (``policy.reload``) and
the secret files (``runtime.secrets``) share this one mechanism.

Each watched path is looked at every ``interval_s`` of its own (``os.stat`` through any symlink: a
Kubernetes ConfigMap or Secret update swaps the ``..data`` symlink, so the path then names another
file), and all of them at once on ``request`` (SIGHUP, when the watch holds the signal). A path
whose device, inode, modification time or size changed (or that appeared or vanished) is handed
to its callback, which reads it again and decides. Polling, not inotify: a symlink swap in a
watched directory is one more case for an event API to get right, the kubelet takes up to a minute
to swap anyway, and a stat every few seconds costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Changed", "FileWatch", "Fingerprint", "fingerprint"]

log = logging.getLogger("consumer.filewatch")

Fingerprint = tuple[int, int, int, int] | None
# called with why it is called: "file changed" or "SIGHUP"
Changed = Callable[[str], Awaitable[None]]


def fingerprint(path: Path) -> Fingerprint:
    try:
        st = os.stat(path)  # follows symlinks: a swapped ConfigMap or Secret names another file
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(slots=True)
class _Watched:
    path: Path
    changed: Changed
    interval_s: float  # 0: only on request
    seen: Fingerprint
    due: float = 0.0


class FileWatch:
    """Paths and what to do when each changes. ``start(sighup=True)`` also makes SIGHUP a
    ``request`` (on the main thread only); ``stop`` undoes both."""

    def __init__(self) -> None:
        self._watched: list[_Watched] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._forced = False
        self._signal = False

    def watch(self, path: Path, changed: Changed, interval_s: float) -> None:
        """Look at ``path`` every ``interval_s`` (0: only on ``request``); its fingerprint now is
        what it was read as."""
        self._watched.append(_Watched(path, changed, interval_s, fingerprint(path)))
        self._wake.set()  # a running watch plans its next look again

    async def start(self, *, sighup: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(signal.SIGHUP, self.request)
                self._signal = True
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def request(self) -> None:
        """Hand every path to its callback now, changed or not (SIGHUP)."""
        self._forced = True
        self._wake.set()

    async def stop(self) -> None:
        if self._signal:
            self._signal = False
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for w in self._watched:
                if w.interval_s and not w.due:
                    w.due = now + w.interval_s
            dues = [w.due for w in self._watched if w.interval_s]
            timeout = max(0.0, min(dues) - now) if dues else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            forced, self._forced = self._forced, False
            now = loop.time()
            for w in tuple(self._watched):
                if not forced and not (w.interval_s and w.due <= now):
                    continue
                if w.interval_s:
                    w.due = now + w.interval_s
                seen = fingerprint(w.path)
                if forced or seen != w.seen:
                    w.seen = seen
                    try:
                        await w.changed("SIGHUP" if forced else "file changed")
                    except Exception as exc:  # a callback's own failure: the watch goes on
                        log.error("reading %s again failed: %s", w.path, type(exc).__name__)
