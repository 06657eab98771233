"""The shipped monitoring: the Grafana dashboard is what ``moderation_devtools.dashboard`` generates, every
expression of it and of the alert rules names a metric the service exports, the rules pass
``promtool check rules`` and their unit tests (``promtool test rules``), and every alert has a
severity, a summary and a runbook section that exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from consumer.telemetry import metrics
from moderation_devtools import dashboard
from moderation_devtools.prometheus import (
    ALERTS,
    DASHBOARD,
    RUNBOOK,
    alert_rules,
    dashboard_targets,
    metric_names,
)

ALERTS_TEST = ALERTS.with_name("alerts.test.yaml")


def exported() -> set[str]:
    """The series names the service's registry exports (with every family's suffixes), and
    ``moderation_worker_up``, which worker 0 adds under ``--workers``."""
    names = {"moderation_worker_up"}
    for family in metrics.REGISTRY.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "info":
            names.add(family.name + "_info")
        else:
            names.add(family.name)
    return names


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: make prometheus (Debian's prometheus package)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_the_dashboard_file_is_what_the_generator_writes() -> None:
    assert DASHBOARD.read_text() == dashboard.render(), "run python -m moderation_devtools.dashboard"


def test_the_dashboard_has_namespace_and_instance_variables_and_filters_on_them() -> None:
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "instance"} <= variables
    targets = list(dashboard_targets())
    assert len(targets) >= 20
    for title, expr in targets:
        assert 'namespace=~"$namespace"' in expr and 'instance=~"$instance"' in expr, title


def test_the_dashboard_covers_what_an_operator_needs() -> None:
    titles = {title for title, _ in dashboard_targets()}
    for wanted in (
        "Throughput and verdict mix",
        "End-to-end latency",
        "Consumer lag per partition",
        "In flight and paused partitions",
        "Provider latency",
        "Provider errors and retries",
        "429s",
        "Concurrency limit",
        "Circuit state",
        "Dead-letter rate",
        "Stalls",
        "Transactions (exactly_once)",
    ):
        assert wanted in titles


def test_every_expression_names_only_exported_metrics() -> None:
    names = exported()
    expressions = [expr for _, expr in dashboard_targets()] + [rule["expr"] for rule in alert_rules()]
    for expr in expressions:
        used = metric_names(expr)
        assert used, expr
        assert used <= names, f"{sorted(used - names)} not exported (in {expr})"


def test_promtool_checks_the_rules() -> None:
    run = promtool("check", "rules", str(ALERTS))
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_unit_tests_every_alert() -> None:
    run = promtool("test", "rules", str(ALERTS_TEST))
    assert run.returncode == 0, run.stdout + run.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", ALERTS_TEST.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^## (.+)$", runbook, re.M)
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor in anchors, rule["alert"]
        assert anchor == rule["alert"].lower()
