"""The lock files the image installs from, read: ``requirements.lock`` (the product's runtime
dependencies) and ``docker/build-tools.lock`` (the image build's setuptools and cyclonedx-bom), both
written by ``make lock`` (``uv pip compile --generate-hashes``) for the image's platform.

``locked(path)`` maps each pinned distribution's canonical name to its version and hashes;
``TARGET`` is the marker environment they are compiled for (Linux x86_64, CPython 3.11, as the
image's base), so a dependency's markers are judged for the image, not for the machine reading it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from moderation_devtools import REPO

__all__ = ["BUILD_TOOLS_LOCK", "REQUIREMENTS_LOCK", "TARGET", "Pin", "locked"]

REQUIREMENTS_LOCK = REPO / "requirements.lock"
BUILD_TOOLS_LOCK = REPO / "docker" / "build-tools.lock"
TARGET = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.11",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.11.11",
    "python_version": "3.11",
    "sys_platform": "linux",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its exact version and the sha256 of each of its files."""

    version: str
    hashes: tuple[str, ...]


def locked(path: Path = REQUIREMENTS_LOCK) -> dict[str, Pin]:
    """``{canonical name: Pin}`` of a ``uv pip compile --generate-hashes`` file."""
    pins: dict[str, Pin] = {}
    name: str | None = None
    version = ""
    hashes: list[str] = []

    def close() -> None:
        if name is not None:
            if name in pins:
                raise ValueError(f"{path}: {name} is pinned twice")
            pins[name] = Pin(version, tuple(hashes))

    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin = _PIN.match(line)
        if pin:
            close()
            name, version, hashes = canonicalize_name(pin[1]), pin[2], []
        elif name is None:
            raise ValueError(f"{path}: {line.strip()!r} before any pin")
        hashes.extend(_HASH.findall(line))
    close()
    return pins
