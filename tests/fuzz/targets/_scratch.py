"""One scratch file per process for the targets whose decoder reads a file (removed at exit)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

__all__ = ["scratch_file"]


def scratch_file(name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="moderation-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder / name
