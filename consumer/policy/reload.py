"""Hot reload of the policy files (the live one and the shadow one): a part the service starts.

Every ``policy_reload_interval_s`` each file is looked at (``transports.filewatch``, which the
secret files share: ``os.stat`` through any symlink, as a Kubernetes ConfigMap update swaps the
``..data`` symlink, so the path then names another file) and on SIGHUP. A changed file is read and
checked exactly as at start (``policy check``); a valid one replaces the whole set in the
``PolicyStore`` at once, between records (each record decides by the set it started with); an
invalid one is refused with one log line naming the setting, and the policies in force stay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.policy.tenants import DEFAULT_POLICY, PolicyChecks, PolicySet, PolicyStore, load_policies
from consumer.telemetry import metrics
from consumer.transports.filewatch import FileWatch

__all__ = ["PolicyReloader", "publish_policy_info"]

log = logging.getLogger("consumer.policy")


def publish_policy_info(store: PolicyStore) -> None:
    """The ``moderation_policy_info`` series: the live set's version and digest, and the shadow's."""
    metrics.POLICY_INFO.labels("live").info({"version": store.live.version, "digest": store.live.digest[:12]})
    if store.shadow is not None:
        shadow = store.shadow
        metrics.POLICY_INFO.labels("shadow").info({"version": shadow.version, "digest": shadow.digest[:12]})


class PolicyReloader:
    """``files``: the process's shared watch, started and stopped by its owner (the wiring); without
    one the reloader has its own, holding SIGHUP."""

    def __init__(
        self, settings: Settings, store: PolicyStore, checks: PolicyChecks, files: FileWatch | None = None
    ) -> None:
        self._store, self._checks = store, checks
        self._own = files is None
        self._watch = FileWatch() if files is None else files
        paths: dict[str, Path] = {"live": settings.policy_file or DEFAULT_POLICY}
        if settings.shadow_policy_file is not None and store.shadow is not None:
            paths["shadow"] = settings.shadow_policy_file
        for role, path in paths.items():
            self._watch.watch(path, self._reloader(role, path), settings.policy_reload_interval_s)

    def _reloader(self, role: str, path: Path) -> Callable[[str], Awaitable[None]]:
        return lambda why: self._reload(role, path, why)

    async def start(self) -> None:
        publish_policy_info(self._store)
        if self._own:
            await self._watch.start(sighup=True)

    def request(self) -> None:
        """Read every policy file again now, changed or not (SIGHUP)."""
        self._watch.request()

    async def stop(self) -> None:
        if self._own:
            await self._watch.stop()

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
