"""The Helm chart rendered by the real helm (``make helm``: go install, cached), no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation_devtools import chart


@pytest.fixture(scope="session", autouse=True)
def helm() -> Path:
    binary = chart.helm_binary()
    if not binary.exists():
        pytest.fail(
            f"helm is missing at {binary}: make helm (go install {chart.HELM_MODULE}@{chart.HELM_VERSION})"
        )
    return binary
