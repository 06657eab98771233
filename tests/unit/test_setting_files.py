"""Files named by settings (``*_file`` secrets, the config file) are read only when they are regular
files, and only up to their bound: a FIFO never blocks start, a device or ``/proc`` link is no key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from consumer.config import load_settings
from consumer.errors import ConfigError


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _fifo(p / "key.fifo"),  # opening it would wait for a writer forever
        lambda p: _link(p / "zero.key", "/dev/zero"),  # endless
        lambda p: _link(p / "mem.key", "/proc/self/mem"),  # a regular file to stat, unreadable
    ],
    ids=["fifo", "dev-zero", "proc-mem"],
)
def test_a_key_file_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: object
) -> None:
    monkeypatch.setenv("MODERATION_HIVE__CSAM_KEY_FILE", str(make(tmp_path)))  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"hive\.csam_key_file .*(not a regular file|cannot read)"):
        load_settings()
    assert time.monotonic() - started < 5


def test_a_config_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_settings(_fifo(tmp_path / "settings.yaml"))
    assert time.monotonic() - started < 5
