"""The Grafana dashboard, generated: ``python -m moderation_devtools.dashboard`` writes
``deploy/grafana/moderation.json`` (``--check``: exit 1 when the file is not what this generates).

Every query filters on the ``namespace``, ``job`` and ``instance`` variables (all filled from
``moderation_build_info``, so process and Python series of other jobs stay out); rates use Grafana's
``$__rate_interval``. The ``objective`` variable is the latency objective's N (a bucket of
``moderation_end_to_end_latency_seconds``, as the alert rules' ``le``). The integration test
``tests/integration/test_prometheus.py`` evaluates every target here against a real Prometheus
scraping the service."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from moderation_devtools import REPO

__all__ = ["PATH", "Panel", "build", "main", "panels", "render"]

PATH = REPO / "deploy" / "grafana" / "moderation.json"
SEL = 'namespace=~"$namespace", job=~"$job", instance=~"$instance"'
# the latency objective's N: the buckets of moderation_end_to_end_latency_seconds as the client
# writes them (le="30.0"); 30 s as in deploy/prometheus/alerts.yaml
OBJECTIVES = ["1.0", "2.5", "5.0", "10.0", "15.0", "30.0", "60.0", "120.0", "300.0", "900.0"]
OBJECTIVE = "30.0"
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def rate(metric: str, matchers: str = "", window: str = RATE) -> str:
    inner = f"{SEL}, {matchers}" if matchers else SEL
    return f"rate({metric}{{{inner}}}[{window}])"


def quantile(q: float, metric: str, by: str = "") -> str:
    keys = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) ({rate(metric + '_bucket')}))"


@dataclass(frozen=True)
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (expression, legend)
    unit: str = "short"
    description: str = ""
    stack: bool = False
    width: int = 12
    mappings: list[dict[str, Any]] = field(default_factory=list)


def panels() -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows and their panels."""
    verdicts = rate("moderation_verdicts_total")
    errors = rate("moderation_provider_requests_total", 'status_class=~"5xx|timeout|error"')
    throttled = rate("moderation_provider_requests_total", 'status_class="429"')
    return [
        (
            "Throughput and latency",
            [
                Panel(
                    "Throughput and verdict mix",
                    [(f"sum by (decision) ({verdicts})", "{{decision}}")],
                    unit="reqps",
                    stack=True,
                    description="Verdicts per second, by decision.",
                ),
                Panel(
                    "Verdict mix",
                    [
                        (
                            f"sum by (decision) ({verdicts})"
                            f" / ignoring (decision) group_left sum({verdicts})",
                            "{{decision}}",
                        )
                    ],
                    unit="percentunit",
                    stack=True,
                    description="Share of each decision among the verdicts.",
                ),
                Panel(
                    "Uploads in, verdicts out",
                    [
                        (f"sum({rate('moderation_uploads_appended_total')})", "uploads appended"),
                        (f"sum({verdicts})", "verdicts"),
                        (f"sum({rate('moderation_dead_letters_total')})", "dead letters"),
                    ],
                    unit="reqps",
                    description="Records appended to the input partitions (from their log ends, every 5 s)"
                    " against verdicts and dead letters: uploads in and nothing out is ModerationNoVerdicts.",
                ),
                Panel(
                    "Verdicts within the latency objective",
                    [
                        (
                            "sum("
                            + rate("moderation_end_to_end_latency_seconds_bucket", 'le="$objective"')
                            + f") / sum({rate('moderation_end_to_end_latency_seconds_count')})",
                            "within $objective s",
                        )
                    ],
                    unit="percentunit",
                    description="The latency SLI: the share of verdicts that came within $objective s of"
                    " their upload's created_at (the objective: 99 %; the burn-rate alerts watch it).",
                ),
                Panel(
                    "End-to-end latency",
                    [
                        (quantile(0.5, "moderation_end_to_end_latency_seconds"), "p50"),
                        (quantile(0.99, "moderation_end_to_end_latency_seconds"), "p99"),
                    ],
                    unit="s",
                    description="From the upload's created_at to its verdict acknowledged by the broker.",
                ),
                Panel(
                    "Check duration p99",
                    [(quantile(0.99, "moderation_check_duration_seconds", "check"), "{{check}}")],
                    unit="s",
                    description="One check, retries included.",
                ),
            ],
        ),
        (
            "Kafka",
            [
                Panel(
                    "Consumer lag per partition",
                    [
                        (
                            f"sum by (topic, partition) (moderation_consumer_lag_records{{{SEL}}})",
                            "{{topic}}[{{partition}}]",
                        )
                    ],
                    description="Log end (last stable offset) minus the committed offset.",
                ),
                Panel(
                    "Lag in time per partition",
                    [
                        (
                            f"max by (topic, partition) (moderation_consumer_lag_seconds{{{SEL}}})",
                            "{{topic}}[{{partition}}]",
                        )
                    ],
                    unit="s",
                    description="Age of the oldest record held unfinished (now minus its Kafka timestamp):"
                    " how far behind the uploads the consumer is. ModerationFallingBehind pages on it.",
                ),
                Panel(
                    "Records waiting per partition",
                    [
                        (
                            f"sum by (topic, partition) (moderation_partition_waiting_records{{{SEL}}})",
                            "{{topic}}[{{partition}}]",
                        )
                    ],
                    description="Received and waiting to start (paused at processing.partition_buffer).",
                ),
                Panel(
                    "In flight and paused partitions",
                    [
                        (f"sum(moderation_in_flight_records{{{SEL}}})", "records in flight"),
                        (f"sum(moderation_paused_partitions{{{SEL}}})", "paused partitions"),
                        (f"sum(moderation_assigned_partitions{{{SEL}}})", "assigned partitions"),
                        (f"max(moderation_intake_held{{{SEL}}})", "intake held"),
                    ],
                ),
                Panel(
                    "Stalls",
                    [
                        (f"sum(moderation_stalled_partitions{{{SEL}}})", "stalled now"),
                        (f"sum(increase(moderation_partition_stalls_total{{{SEL}}}[{RATE}]))", "new stalls"),
                    ],
                    description="Partitions whose oldest record passed processing.stall_after_s.",
                ),
                Panel(
                    "Transactions (exactly_once)",
                    [(f"sum by (outcome) ({rate('moderation_transactions_total')})", "{{outcome}}")],
                    unit="ops",
                ),
                Panel(
                    "Rebalances",
                    [(f"sum by (kind) (increase(moderation_rebalances_total{{{SEL}}}[{RATE}]))", "{{kind}}")],
                ),
            ],
        ),
        (
            "Providers",
            [
                Panel(
                    "Provider latency",
                    [
                        (
                            quantile(0.5, "moderation_provider_request_duration_seconds", "provider, check"),
                            "p50 {{provider}} {{check}}",
                        ),
                        (
                            quantile(0.99, "moderation_provider_request_duration_seconds", "provider, check"),
                            "p99 {{provider}} {{check}}",
                        ),
                    ],
                    unit="s",
                    description="One HTTP attempt.",
                ),
                Panel(
                    "Provider requests by status class",
                    [
                        (
                            f"sum by (provider, status_class) ({rate('moderation_provider_requests_total')})",
                            "{{provider}} {{status_class}}",
                        )
                    ],
                    unit="reqps",
                    stack=True,
                ),
                Panel(
                    "Provider errors and retries",
                    [
                        (f"sum by (provider, check) ({errors})", "errors {{provider}} {{check}}"),
                        (
                            f"sum by (check, reason) ({rate('moderation_provider_retries_total')})",
                            "retries {{check}} {{reason}}",
                        ),
                    ],
                    unit="reqps",
                ),
                Panel(
                    "429s",
                    [
                        (f"sum by (provider, check) ({throttled})", "{{provider}} {{check}}"),
                    ],
                    unit="reqps",
                    description="Rate limited by the provider: the concurrency limit halves on each.",
                ),
                Panel(
                    "Concurrency limit",
                    [(f"min by (check) (moderation_provider_concurrency_limit{{{SEL}}})", "{{check}}")],
                    description="The adaptive (AIMD) limit per check, the lowest of the instances.",
                ),
                Panel(
                    "Circuit state",
                    [(f"max by (check) (moderation_provider_circuit_state{{{SEL}}})", "{{check}}")],
                    description="0 closed, 1 half-open, 2 open (intake is held while open).",
                    mappings=[
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "closed", "color": "green"},
                                "1": {"text": "half-open", "color": "orange"},
                                "2": {"text": "open", "color": "red"},
                            },
                        }
                    ],
                ),
            ],
        ),
        (
            "Outcomes",
            [
                Panel(
                    "Dead-letter rate",
                    [(f"sum by (error_class) ({rate('moderation_dead_letters_total')})", "{{error_class}}")],
                    unit="reqps",
                    stack=True,
                ),
                Panel(
                    "Fail-closed verdicts",
                    [
                        (f"sum({rate('moderation_fail_closed_verdicts_total')})", "fail-closed/s"),
                        (
                            f"sum({rate('moderation_fail_closed_verdicts_total')}) / sum({verdicts})",
                            "share of verdicts",
                        ),
                    ],
                    description="Verdicts with a check_unavailable reason (REVIEW at least).",
                ),
            ],
        ),
        (
            "Policy",
            [
                Panel(
                    "Policy in force",
                    [
                        (
                            f"max by (role, version, digest) (moderation_policy_info{{{SEL}}})",
                            "{{role}} {{version}} {{digest}}",
                        )
                    ],
                    width=8,
                    description="The live (and shadow) policy file's version and digest;"
                    " two lines of one role: the instances disagree.",
                ),
                Panel(
                    "Policy reloads",
                    [
                        (
                            f"sum by (outcome) (increase(moderation_policy_reloads_total{{{SEL}}}[{RATE}]))",
                            "{{outcome}}",
                        )
                    ],
                    width=8,
                    description="Applied, refused (invalid: the old policy stays) and unchanged reloads.",
                ),
                Panel(
                    "Shadow policy decisions",
                    [
                        (
                            f"sum by (live, shadow) ({rate('moderation_shadow_decisions_total')})",
                            "{{live}} -> {{shadow}}",
                        )
                    ],
                    unit="reqps",
                    width=8,
                    description="Every verdict as the shadow policy decides it;"
                    " live and shadow differ: a disagreement.",
                ),
            ],
        ),
        (
            "Process",
            [
                Panel(
                    "CPU",
                    [(f"sum by (instance) ({rate('process_cpu_seconds_total')})", "{{instance}}")],
                    unit="percentunit",
                ),
                Panel(
                    "Resident memory",
                    [(f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})", "{{instance}}")],
                    unit="bytes",
                ),
                Panel(
                    "Python garbage collections",
                    [(f"sum by (generation) ({rate('python_gc_collections_total')})", "gen {{generation}}")],
                    unit="ops",
                ),
            ],
        ),
    ]


def _panel(panel: Panel, ident: int, x: int, y: int) -> dict[str, Any]:
    custom: dict[str, Any] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if panel.stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "id": ident,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "custom": custom, "mappings": panel.mappings},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def _variable(name: str, query: str, all_value: str | None = None) -> dict[str, Any]:
    """``all_value``: what "All" stands for (default: every value found, as a regex alternation)."""
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": all_value,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    layout: list[dict[str, Any]] = []
    ident, y = 1, 0
    for row, members in panels():
        layout.append(
            {
                "id": ident,
                "type": "row",
                "title": row,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        ident, y, x = ident + 1, y + 1, 0
        for panel in members:
            if x + panel.width > 24:
                x, y = 0, y + 8
            layout.append(_panel(panel, ident, x, y))
            ident, x = ident + 1, x + panel.width
        y += 8
    return {
        "uid": "moderation-consumer",
        "title": "Upload moderation consumer",
        "description": (
            "Generated by dev/moderation_devtools/dashboard.py: edit it there,"
            " run python -m moderation_devtools.dashboard."
        ),
        "tags": ["moderation", "kafka"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                _variable("namespace", "label_values(moderation_build_info, namespace)", ".*"),
                _variable("job", 'label_values(moderation_build_info{namespace=~"$namespace"}, job)'),
                _variable(
                    "instance",
                    'label_values(moderation_build_info{namespace=~"$namespace", job=~"$job"}, instance)',
                ),
                {
                    "name": "objective",
                    "label": "latency objective (s)",
                    "type": "custom",
                    "query": ",".join(OBJECTIVES),
                    "current": {"selected": True, "text": OBJECTIVE, "value": OBJECTIVE},
                    "options": [
                        {"selected": value == OBJECTIVE, "text": value, "value": value}
                        for value in OBJECTIVES
                    ],
                    "includeAll": False,
                    "multi": False,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": layout,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moderation_devtools.dashboard", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PATH.read_text() if PATH.exists() else ""
        if current != text:
            print(f"{PATH} is out of date: run python -m moderation_devtools.dashboard", file=sys.stderr)
            return 1
        return 0
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
