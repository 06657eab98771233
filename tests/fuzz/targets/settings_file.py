"""Settings files (``--config`` / ``MODERATION_CONFIG``): YAML read with its bounds, then the
settings built from it (the environment still applies, as in the service). Documented error:
``ConfigError``."""

from __future__ import annotations

from consumer.config import load_settings
from consumer.errors import ConfigError
from tests.fuzz.targets._scratch import scratch_file

__all__ = ["test_one_input"]

_PATH = scratch_file("settings.yaml")


def test_one_input(data: bytes) -> None:
    _PATH.write_bytes(data)
    try:
        load_settings(_PATH)
    except ConfigError:
        return
