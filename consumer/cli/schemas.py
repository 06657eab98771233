"""``schemas register`` and ``schemas check``: the commands over ``consumer.schema_admin`` (one line
per subject, and the exit code).

Exit codes: 0 all compatible (or registered), 1 a schema is incompatible (or refused), 3 the
registry is unreachable or answered an error we cannot act on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from consumer import schema_admin
from consumer.config import Settings
from consumer.schema_admin import Outcome, Result

__all__ = ["EXIT_INCOMPATIBLE", "EXIT_UNREACHABLE", "check", "register"]

EXIT_INCOMPATIBLE = 1
EXIT_UNREACHABLE = 3


def register(
    settings: Settings, *, schema_dir: Path | None = None, echo: Callable[[str], None] = print
) -> int:
    """Set each subject's compatibility level, then register the shipped schema under it."""
    return _report(schema_admin.register(settings, schema_dir=schema_dir), echo)


def check(settings: Settings, *, schema_dir: Path | None = None, echo: Callable[[str], None] = print) -> int:
    """Whether each shipped schema may be registered under its subject's compatibility level."""
    return _report(schema_admin.check(settings, schema_dir=schema_dir), echo)


def _report(results: Iterator[Result], echo: Callable[[str], None]) -> int:
    worst = 0
    for result in results:  # nothing follows an error
        echo(f"{result.outcome.value:<7} {result.text}")
        if result.outcome is Outcome.ERROR:
            worst = EXIT_UNREACHABLE
        elif result.outcome is Outcome.REFUSED:
            worst = max(worst, EXIT_INCOMPATIBLE)
    return worst
