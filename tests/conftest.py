"""Fixtures shared by every test: sample media factories. (Retries without waiting are a
``RetryPolicy`` with zero delays, passed where a test builds its clients or settings.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from moderation_devtools.samples import image_bytes, make_image


@pytest.fixture
def png() -> Callable[[int], bytes]:
    """png(seed) -> bytes of a deterministic textured image."""
    return lambda seed: image_bytes(make_image(seed))


_ACCOUNTING_KEY = pytest.StashKey[list[str]]()


@pytest.fixture
def accounting(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """accounting(line): print the test's accounting line now (with -s) and in the run's summary."""

    def report(line: str) -> None:
        print(f"\n{line}")
        request.config.stash.setdefault(_ACCOUNTING_KEY, []).append(f"{request.node.nodeid}: {line}")

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_ACCOUNTING_KEY, [])
    if lines:
        terminalreporter.section("accounting")
        for line in lines:
            terminalreporter.write_line(line)
