"""Developer tools of the repository (local broker and registry, sample media, the process stack the
tests drive, the chart and dashboard generators, the demo). Not shipped: only ``consumer`` is in the
wheel and the image; ``make install`` installs this editable from ``dev/``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO"]

# the checkout these tools live in (dev/moderation_devtools/ -> the repository root)
REPO = Path(__file__).resolve().parents[2]
