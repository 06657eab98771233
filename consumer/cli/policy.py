"""``python -m consumer policy check FILE`` and ``policy backtest --candidate FILE``: the commands
over ``consumer.policy`` (arguments in, lines out).

``check`` validates a policy file offline exactly as the service does at start and on reload.
``backtest`` decides recorded verdicts again with a candidate (``consumer.policy.backtest``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from consumer.checks.registry import CheckRegistry, Feeds
from consumer.core.records import ModerationVerdict
from consumer.errors import ConfigError
from consumer.policy.backtest import Backtest, backtest_candidate
from consumer.policy.tenants import load_policies

__all__ = ["backtest", "check_policy_file", "parse_time"]


def check_policy_file(path: Path, registry: CheckRegistry, echo: Callable[[str], None] = print) -> int:
    """0 and a summary when valid; ConfigError (naming the setting) when not."""
    policies = load_policies(path, registry, setting="policy file")
    tenants = sorted(policies.tenants)
    shown = ", ".join(tenants[:10]) + (" ..." if len(tenants) > 10 else "")
    echo(
        f"{path}: valid policy {policies.version} (digest {policies.digest[:12]}),"
        f" {len(tenants)} tenant override{'s' if len(tenants) != 1 else ''}{': ' + shown if tenants else ''}"
    )
    return 0


def parse_time(value: str, option: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(option, "expected an ISO 8601 time such as 2026-12-04T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def backtest(
    verdicts: Iterable[ModerationVerdict],
    candidate: Path,
    registry: CheckRegistry,
    *,
    as_json: bool = False,
    examples: int = 3,
    echo: Callable[[str], None] = print,
) -> Backtest:
    """Backtest ``candidate`` on ``verdicts`` and print the result (a table, or JSON)."""
    result = backtest_candidate(verdicts, candidate, registry, registry.fed(Feeds.SIMILARITY), examples)
    echo(json.dumps(result.to_json(), indent=2) if as_json else result.table())
    return result
