"""Secrets re-read while the service runs: each provider key and registry credential given as a
file (``hive.visual_key_file``, ``huawei.token_file``, ``schema_registry.basic_auth_user_info_file``,
…: ``config.ROTATING_SECRETS``) is watched (``transports.filewatch``, shared with the policy
reload: a Kubernetes Secret's ``..data`` symlink swap is a change) and, when it changes or on
SIGHUP, read again with the rules it was read by at start (``settings_sections.read_secret_file``).

A new value replaces the setting's ``RotatingSecret`` at once: the next provider call sends it,
the redactor hides it from then on (the old one too), the registry codec asks with a new client.
A file that cannot be read, or is empty, or is not a valid secret keeps the old value: one log
line names the setting and the reason (never the value) and ``moderation_secret_reloads_total``
counts a refusal. The read happens in a worker thread; nothing is read per call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from consumer.config import Settings
from consumer.core.secrets import RotatingSecret
from consumer.errors import UnreadableFile
from consumer.settings_sections import os_reason, read_secret_file
from consumer.telemetry import metrics
from consumer.transports.filewatch import FileWatch

__all__ = ["SecretFiles"]

log = logging.getLogger("consumer.secrets")


class SecretFiles:
    """The rotating secrets of ``settings`` that come from files, watched on ``files`` (started and
    stopped by its owner; without one: ``start`` and ``stop`` run their own, holding SIGHUP)."""

    def __init__(self, settings: Settings, files: FileWatch | None = None) -> None:
        self._own = files is None
        self._watch = FileWatch() if files is None else files
        self.secrets: dict[str, RotatingSecret] = {}
        self._paths: dict[str, Path] = {}
        for setting, path in settings.secret_files().items():
            secret = settings.live_secret(setting)
            if secret is None:  # validated at start: a file gives a value or start fails
                continue
            self.secrets[setting] = secret
            self._paths[setting] = path
            for outcome in ("applied", "refused", "unchanged"):  # at 0 from the start: a rate needs a series
                metrics.SECRET_RELOADS.labels(setting, outcome)
            self._watch.watch(path, self._reader(secret, path), settings.secret_reload_interval_s)

    def _reader(self, secret: RotatingSecret, path: Path) -> Callable[[str], Awaitable[None]]:
        return lambda why: self.reload(secret, path, why)

    async def start(self) -> None:
        """Read every file once more (a value replaced between the settings' load and now is not
        missed), then watch them."""
        for setting, secret in self.secrets.items():
            await self.reload(secret, self._paths[setting], "start")
        if self._own:
            await self._watch.start(sighup=True)

    def request(self) -> None:
        """Read every secret file again now, changed or not (SIGHUP)."""
        self._watch.request()

    async def stop(self) -> None:
        if self._own:
            await self._watch.stop()

    async def reload(self, secret: RotatingSecret, path: Path, why: str) -> None:
        """Read ``path`` again and make its value ``secret``'s, or keep the old one and say why."""
        setting = secret.setting
        try:
            value = await asyncio.to_thread(read_secret_file, path)
        except OSError as exc:
            reason = os_reason(exc)
        except UnreadableFile as exc:
            reason = str(exc)
        else:
            try:
                changed = secret.replace(value)
            except Exception as exc:  # a subscriber failed (a registry client not built): in force anyway
                metrics.SECRET_RELOADS.labels(setting, "applied").inc()
                log.error(
                    "%s_file read again (%s): new value in force, but applying it failed: %s",
                    setting,
                    why,
                    type(exc).__name__,
                )
                return
            metrics.SECRET_RELOADS.labels(setting, "applied" if changed else "unchanged").inc()
            if changed:
                log.info("%s replaced from %s_file (%s): the next call uses it", setting, setting, why)
            return
        metrics.SECRET_RELOADS.labels(setting, "refused").inc()
        log.error("%s_file %s read refused (%s): %s; the value in force stays", setting, path, why, reason)
