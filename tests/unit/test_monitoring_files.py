"""The shipped monitoring: the Grafana dashboard is what ``moderation_devtools.dashboard`` generates, every
expression of it and of the alert rules names a metric the service exports, the rules pass
``promtool check rules`` and their unit tests (``promtool test rules``), and every alert has a
severity, a ``for:``, a summary and an absolute runbook URL to a section that exists. The latency
objective's bucket is one the service writes; ``ModerationNoVerdicts`` has a job selector."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from consumer.telemetry import metrics
from consumer.telemetry.logging import JsonFormatter
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
RUNBOOK_BASE = "https://git.example.com/moderation/blob/main/"  # the placeholder the chart replaces
JOB = 'job="moderation-consumer"'  # the placeholder scrape job the chart replaces
_RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_:]+\b")


def bucket_labels() -> set[str]:
    """The ``le`` values of the end-to-end latency histogram, as the client writes them."""
    return {floatToGoString(b) for b in metrics.END_TO_END_BUCKETS}  # type: ignore[no-untyped-call]


def recording_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "record" in rule]


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


def test_the_dashboard_has_namespace_job_and_instance_variables_and_filters_on_them() -> None:
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "job", "instance", "objective"} <= variables.keys()
    targets = list(dashboard_targets())
    assert len(targets) >= 20
    for title, expr in targets:
        for name in ("namespace", "job", "instance"):
            assert f'{name}=~"${name}"' in expr, (title, name)
    # the objective's choices are the latency histogram's buckets as the client writes them
    buckets = bucket_labels()
    assert {o["value"] for o in variables["objective"]["options"]} <= buckets


def test_the_dashboard_covers_what_an_operator_needs() -> None:
    titles = {title for title, _ in dashboard_targets()}
    for wanted in (
        "Throughput and verdict mix",
        "End-to-end latency",
        "Verdicts within the latency objective",
        "Uploads in, verdicts out",
        "Consumer lag per partition",
        "Lag in time per partition",
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
    rules = alert_rules() + recording_rules()
    expressions = [expr for _, expr in dashboard_targets()] + [rule["expr"] for rule in rules]
    recorded = {rule["record"] for rule in recording_rules()}
    for expr in expressions:
        used = metric_names(_RECORDED.sub("", expr))
        assert used or _RECORDED.search(expr), expr
        assert used <= names, f"{sorted(used - names)} not exported (in {expr})"
        assert set(_RECORDED.findall(expr)) <= recorded, expr


def test_promtool_checks_the_rules() -> None:
    run = promtool("check", "rules", str(ALERTS))
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_unit_tests_every_alert() -> None:
    run = promtool("test", "rules", str(ALERTS_TEST))
    assert run.returncode == 0, run.stdout + run.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", ALERTS_TEST.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_every_alert_has_a_severity_a_for_a_summary_and_an_absolute_runbook_url() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^## (.+)$", runbook, re.M)
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert re.fullmatch(r"[1-9][0-9]*[smh]", rule.get("for", "")), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == RUNBOOK_BASE + "docs/runbook.md" and anchor in anchors, rule["alert"]
        assert anchor == rule["alert"].lower()


def test_the_latency_objective_reads_a_bucket_the_service_writes() -> None:
    buckets = bucket_labels()
    burn = [rule for rule in recording_rules() if "moderation_latency_slo" in rule["record"]]
    windows = {rule["record"].rpartition("burn_rate")[2] for rule in burn}
    assert windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}  # the SRE workbook's window pairs
    for rule in burn:
        (le,) = re.findall(r'le="([^"]+)"', rule["expr"])
        assert le in buckets and le == "30.0", rule["record"]
        assert "(1 - 0.99)" in rule["expr"], rule["record"]


def test_no_verdicts_asks_for_uploads_arriving_and_names_its_job() -> None:
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == "ModerationNoVerdicts"]
    assert "moderation_uploads_appended_total" in rule["expr"]
    absent = re.findall(r"absent\((.*)\)", rule["expr"])
    assert absent and all(JOB in inner for inner in absent)
    for selector in re.findall(r"\b[a-z_]+\{[^}]*\}", rule["expr"]):
        assert JOB in selector, selector


def test_the_charts_copies_are_deploys_files() -> None:
    chart = ALERTS.parents[2] / "helm" / "moderation-consumer" / "files"
    assert (chart / "alerts.yaml").read_text() == ALERTS.read_text()
    assert (chart / "moderation.json").read_text() == DASHBOARD.read_text()


def test_the_runbooks_log_filters_use_the_levels_the_service_writes() -> None:
    """The logs are JSON with lower-case levels (``JsonFormatter``); a filter on ``"ERROR"`` finds
    nothing. And nothing is run inside the pod that its image lacks."""
    runbook = RUNBOOK.read_text()
    written = {
        json.loads(JsonFormatter().format(logging.makeLogRecord({"levelname": name, "msg": "x"})))["level"]
        for name in ("DEBUG", "INFO", "WARNING", "ERROR")
    }
    filtered = set(re.findall(r'\.level == "([^"]+)"', runbook))
    assert filtered and filtered <= written, filtered - written
    for command in re.findall(r"kubectl exec \S+ -- (\S+)", runbook):
        assert command in {"python", "sh", "moderation-consumer"}, command
