"""The chart's PrometheusRule with the real helm: ``deploy/prometheus/alerts.yaml`` with its placeholders
(listed at its top) replaced by ``monitoring.prometheusRule``'s values, the result still passing
``promtool check rules``; values that would make rules nobody can evaluate are refused."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from moderation_devtools import chart

pytestmark = pytest.mark.deploy

RELEASE = "mod"
FULLNAME = f"{RELEASE}-moderation-consumer"
SHIPPED = chart.ROOT / "deploy" / "prometheus" / "alerts.yaml"
KEYS = {"secrets": {"existingSecret": "moderation-keys"}}


def rules(monitoring: dict[str, Any]) -> dict[str, Any]:
    docs = chart.manifests({**KEYS, "monitoring": monitoring}, release=RELEASE, namespace="moderation")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def every(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def named(spec: dict[str, Any], alert: str) -> dict[str, Any]:
    (found,) = [rule for rule in every(spec) if rule.get("alert") == alert]
    return found


def test_by_default_the_rules_are_deploys_with_the_scrape_job_of_the_charts_monitor() -> None:
    text = SHIPPED.read_text()
    for monitoring, job in (
        ({"serviceMonitor": {"enabled": True}}, FULLNAME),
        ({"podMonitor": {"enabled": True}}, f"moderation/{FULLNAME}"),
        ({}, FULLNAME),
    ):
        spec = rules({**monitoring, "prometheusRule": {"enabled": True}})
        assert spec == yaml.safe_load(text.replace('job="moderation-consumer"', f'job="{job}"')), job
    urls = [rule["annotations"]["runbook_url"] for rule in every(spec) if "alert" in rule]
    assert all(u.startswith("https://git.example.com/moderation/blob/main/docs/runbook.md#") for u in urls)


def test_the_objective_the_lag_threshold_the_job_and_the_runbook_base_come_from_the_values(
    tmp_path: Path,
) -> None:
    spec = rules(
        {
            "prometheusRule": {
                "enabled": True,
                "runbookBaseUrl": "https://wiki.example.org/trust-and-safety/moderation",
                "job": "kubernetes-pods",
                "latencyObjective": {"seconds": 2.5, "target": 0.995},
                "lagAlertSeconds": 90,
            }
        }
    )
    text = yaml.safe_dump(spec)
    for placeholder in ('le="30.0"', "(1 - 0.99)", "within 30 s", "99% of", "> 300", "git.example.com"):
        assert placeholder not in text, placeholder
    burn = [rule for rule in every(spec) if "burn_rate" in rule.get("record", "")]
    assert len(burn) == 7
    for rule in burn:
        assert 'le="2.5"' in rule["expr"] and "/ (1 - 0.995)" in rule["expr"], rule["expr"]
    assert (
        "99.5% of verdicts within 2.5 s"
        in named(spec, "ModerationLatencyBudgetBurnFast")["annotations"]["description"]
    )
    assert (
        named(spec, "ModerationFallingBehind")["expr"]
        .strip()
        .endswith("moderation_consumer_lag_seconds) > 90")
    )
    no_verdicts = named(spec, "ModerationNoVerdicts")["expr"]
    assert len(re.findall(r'job="kubernetes-pods"', no_verdicts)) == 3
    for rule in every(spec):
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            assert (
                url
                == f"https://wiki.example.org/trust-and-safety/moderation/docs/runbook.md#{rule['alert'].lower()}"
            )
    # still a rule file Prometheus loads
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make prometheus"
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_whole_number_objective_is_written_as_the_client_writes_its_bucket() -> None:
    spec = rules({"prometheusRule": {"enabled": True, "latencyObjective": {"seconds": 60, "target": 0.9}}})
    for rule in every(spec):
        if "burn_rate" in rule.get("record", ""):
            assert 'le="60.0"' in rule["expr"] and "(1 - 0.9)" in rule["expr"]
    assert (
        "90% of verdicts within 60 s"
        in named(spec, "ModerationLatencyBudgetBurnSlow")["annotations"]["description"]
    )


@pytest.mark.parametrize(
    ("rule", "name"),
    [
        ({"latencyObjective": {"seconds": 20}}, "seconds"),  # no such bucket: the SLI could not be read
        ({"latencyObjective": {"target": 1}}, "target"),  # no error budget
        ({"latencyObjective": {"target": 0.99, "window": "30d"}}, "window"),
        ({"lagAlertSeconds": 0}, "lagAlertSeconds"),
        ({"runbookBaseUrl": "docs/"}, "runbookBaseUrl"),  # relative: useless in a page
        ({"job": 'x"} or vector(1) #'}, "job"),
    ],
)
def test_the_schema_refuses_values_that_make_broken_rules(rule: dict[str, Any], name: str) -> None:
    values = {**KEYS, "monitoring": {"prometheusRule": {"enabled": True, **rule}}}
    done = chart.template(values, release=RELEASE)
    assert done.returncode != 0, done.stdout[:500]
    assert name in done.stderr, done.stderr
