"""Hot reload of the policy files (the live one and the shadow one): a part the service starts.

Every ``policy_reload_interval_s`` each file is looked at (``os.stat`` through any symlink: a
Kubernetes ConfigMap update swaps the ``..data`` symlink, so the path then names another file)
and on SIGHUP. A changed file is read and checked exactly as at start (``policy check``); a valid
one replaces the whole set in the ``PolicyStore`` at once, between records (each record decides by
the set it started with); an invalid one is refused with one log line naming the setting, and the
policies in force stay. Polling, not inotify: a symlink swap in a watched directory is one more
case for an event API to get right, the kubelet takes up to a minute to swap anyway, and a stat
every few seconds costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.policy.tenants import DEFAULT_POLICY, PolicyChecks, PolicySet, PolicyStore, load_policies
from consumer.telemetry import metrics

__all__ = ["PolicyReloader", "publish_policy_info"]

log = logging.getLogger("consumer.policy")

Fingerprint = tuple[int, int, int, int] | None


def _fingerprint(path: Path) -> Fingerprint:
    try:
        st = os.stat(path)  # follows symlinks: a swapped ConfigMap names another file
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def publish_policy_info(store: PolicyStore) -> None:
    """The ``moderation_policy_info`` series: the live set's version and digest, and the shadow's."""
    metrics.POLICY_INFO.labels("live").info({"version": store.live.version, "digest": store.live.digest[:12]})
    if store.shadow is not None:
        shadow = store.shadow
        metrics.POLICY_INFO.labels("shadow").info({"version": shadow.version, "digest": shadow.digest[:12]})


class PolicyReloader:
    def __init__(self, settings: Settings, store: PolicyStore, checks: PolicyChecks) -> None:
        self._store, self._checks = store, checks
        self._interval = settings.policy_reload_interval_s
        self._files: dict[str, Path] = {"live": settings.policy_file or DEFAULT_POLICY}
        if settings.shadow_policy_file is not None and store.shadow is not None:
            self._files["shadow"] = settings.shadow_policy_file
        self._seen = {role: _fingerprint(path) for role, path in self._files.items()}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._forced = False
        self._signal = False

    async def start(self) -> None:
        publish_policy_info(self._store)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, self.request)
            self._signal = True
        self._task = asyncio.create_task(self._watch())

    def request(self) -> None:
        """Read every policy file again now, changed or not (SIGHUP)."""
        self._forced = True
        self._wake.set()

    async def stop(self) -> None:
        if self._signal:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            timeout = self._interval or None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            forced, self._forced = self._forced, False
            for role, path in self._files.items():
                seen = _fingerprint(path)
                if forced or seen != self._seen[role]:
                    self._seen[role] = seen
                    await self._reload(role, path, "SIGHUP" if forced else "file changed")

    async def _reload(self, role: str, path: Path, why: str) -> None:
        current = self._store.live if role == "live" else self._store.shadow
        setting = "policy_file" if role == "live" else "shadow_policy_file"
        try:
            loaded: PolicySet = await asyncio.to_thread(load_policies, path, self._checks, setting=setting)
        except ConfigError as exc:
            metrics.POLICY_RELOADS.labels("refused").inc()
            kept = current.version if current is not None else "none"
            log.error("%s policy reload refused (%s): %s; version %s stays", role, why, exc, kept)
            return
        except Exception as exc:  # whatever else: the policies in force stay, the service goes on
            metrics.POLICY_RELOADS.labels("refused").inc()
            log.error("%s policy reload refused (%s): %s", role, why, type(exc).__name__)
            return
        if current is not None and loaded.digest == current.digest:
            metrics.POLICY_RELOADS.labels("unchanged").inc()
            log.info("%s policy unchanged (%s): version %s", role, why, loaded.version)
            return
        if role == "live":
            self._store.live = loaded
        else:
            self._store.shadow = loaded
        metrics.POLICY_RELOADS.labels("applied").inc()
        publish_policy_info(self._store)
        was = current.version if current is not None else "none"
        log.info(
            "%s policy reloaded (%s): version %s, digest %s (was %s)",
            role,
            why,
            loaded.version,
            loaded.digest[:12],
            was,
            extra={"policy_version": loaded.version, "tenants": len(loaded.tenants)},
        )
