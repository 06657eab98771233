"""Each chaos test runs in both delivery modes on a stack of its own (broker, faulty simulator)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ChaosStack


@pytest.fixture(params=["exactly_once", "at_least_once"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChaosStack]:
    s = ChaosStack(tmp_path, request.param).start()
    try:
        yield s
    finally:
        s.stop()
