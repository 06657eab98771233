"""The shipped monitoring against real parts: a real Prometheus (Debian's package) scrapes the
running service; ``promtool check metrics`` accepts a live scrape of its ``/metrics``; every
target of the Grafana dashboard and every alert rule returns data from it.

Alerts are checked two ways. Prometheus itself loads ``alerts.yaml`` and evaluates every rule
(health ``ok``: each expression runs against the live series without error). And since an alert's
full expression returns nothing while all is well, each one is evaluated without its thresholds:
``moderation_devtools.prometheus.data_queries`` splits it at its set operators (``and``, ``or``, ``unless``),
strips each operand's trailing threshold comparison (``> 0.01``, ``== 0``), and replaces
``absent(x)`` by ``x``; every resulting query must return at least one series. The recording rules
(the latency objective's burn rates) are queried as written too, and the 5-minute burn rate must be
a number below the paging threshold: the objective's bucket is one the service writes. Prometheus
scrapes the service under the job the rule file names (its placeholder ``moderation-consumer``), so
``ModerationNoVerdicts``' selector finds it. Nothing is padded with ``vector(0)``: the data comes
from the run (provider faults give 429s, 5xx and retries, a poison record a dead letter,
exactly-once mode the transactions)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from consumer.core.records import MediaType
from consumer.policy.tenants import DEFAULT_POLICY
from consumer.telemetry import metrics
from moderation_devtools.prometheus import (
    ALERTS,
    PrometheusServer,
    alert_rules,
    dashboard_targets,
    data_queries,
)
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import SimulatorProcess, produce_uploads, upload, wait_until, wait_until_async

from .conftest import Topics

pytestmark = pytest.mark.integration

NAMESPACE = "it-monitoring"
JOB = "moderation-consumer"  # the scrape job alerts.yaml's ModerationNoVerdicts names
OBJECTIVE = "30.0"  # the dashboard's objective variable, as alerts.yaml's le
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval, roomily


def counted(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def observed() -> dict[str, float]:
    """What this run must increase: each check's duration, the end-to-end latency, both providers'
    requests."""
    return {
        "text check": counted("moderation_check_duration_seconds_count", check="text", outcome="ok"),
        "visual check": counted("moderation_check_duration_seconds_count", check="visual", outcome="ok"),
        "end to end": counted("moderation_end_to_end_latency_seconds_count", media_type="TEXT")
        + counted("moderation_end_to_end_latency_seconds_count", media_type="IMAGE"),
        "hive": counted(
            "moderation_provider_requests_total", provider="hive", check="text", status_class="2xx"
        ),
        "huawei": counted(
            "moderation_provider_requests_total", provider="huawei", check="similarity", status_class="2xx"
        ),
    }


def recording_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "record" in rule]


def grafana(expr: str, variables: dict[str, str]) -> str:
    """A dashboard expression as Grafana sends it: variables replaced by the selected values."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name, selected in variables.items():
        expr = expr.replace(f"${name}", selected)
    return expr


async def test_dashboard_and_alerts_return_data_from_a_real_prometheus(
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
    tmp_path: Path,
) -> None:
    sim.admin("/_admin/latency", json={"median_ms": 5, "p99_ms": 20})
    sim.admin("/_admin/faults", json={"429": 0.08, "500": 0.04})
    shadow = tmp_path / "shadow.yaml"  # a shadow policy: its decisions are series too
    shadow.write_text(DEFAULT_POLICY.read_text().replace("version: default", "version: shadow"))
    settings = settings_for(topics, delivery="exactly_once", similarity="huawei").model_copy(
        update={"shadow_policy_file": shadow}
    )
    uploads = [upload(MediaType.TEXT, text=f"hello {i}") for i in range(60)]
    uploads += [
        upload(MediaType.IMAGE, data=image_bytes(make_image(i)), content_type="image/png") for i in range(20)
    ]
    before = observed()
    async with running_service(settings) as service:
        assert await wait_until_async(lambda: service.watch.port is not None, 30)
        target = f"127.0.0.1:{service.watch.port}"
        prometheus = PrometheusServer(
            tmp_path / "prometheus", [target], labels={"namespace": NAMESPACE}, job=JOB, rule_files=[ALERTS]
        )
        await asyncio.to_thread(prometheus.start)
        try:
            # scraped once before any upload: the latency series (at 0 from the start) have a sample
            # before the run's increase, which the burn rates then see
            latency = 'moderation_end_to_end_latency_seconds_count{media_type="TEXT"}'
            scraped = await asyncio.to_thread(wait_until, lambda: bool(prometheus.query(latency)), 30, 0.2)
            assert scraped, "prometheus never scraped the service"
            await asyncio.to_thread(
                produce_uploads, kafka_bootstrap, topics.input, uploads, raw=[(b"poison", b"not avro")]
            )
            assert await wait_until_async(lambda: service.processed >= len(uploads), 120), "verdicts missing"
            # the end-to-end latency is observed when the broker acknowledges a verdict, just after
            acknowledged = before["end to end"] + len(uploads)
            assert await wait_until_async(lambda: observed()["end to end"] >= acknowledged, 30), observed()
            after = observed()
            assert all(after[k] > before[k] for k in before), (before, after)

            async with httpx.AsyncClient() as client:
                scrape = (await client.get(f"http://{target}/metrics")).content
            check = await asyncio.to_thread(
                subprocess.run, [shutil.which("promtool") or "promtool", "check", "metrics"], input=scrape
            )
            assert check.returncode == 0, "promtool check metrics refused the live scrape"

            # the dashboard's variables, as Grafana fills them (label_values of moderation_build_info)
            variables = {}
            for name in ("namespace", "job", "instance"):

                def label_values(name: str = name) -> list[str]:
                    found: list[str] = prometheus.api(
                        f"label/{name}/values", **{"match[]": "moderation_build_info"}
                    )
                    return found

                # the series exists once Prometheus has scraped the service at least once
                await wait_until_async(lambda: bool(label_values()), 30, 0.5)
                values = await asyncio.to_thread(label_values)
                assert values, f"the {name} variable has no values"
                variables[name] = "|".join(values)
            assert variables == {"namespace": NAMESPACE, "job": JOB, "instance": target}
            variables["objective"] = OBJECTIVE

            queries = {
                f"panel {title!r}: {expr}": grafana(expr, variables) for title, expr in dashboard_targets()
            }
            for rule in alert_rules():
                for query in data_queries(rule["expr"]):
                    queries[f"alert {rule['alert']}: {query}"] = query
            for rule in recording_rules():
                queries[f"record {rule['record']}"] = rule["expr"]
            empty = set(queries)

            def all_return_data() -> bool:
                for what in sorted(empty):
                    if prometheus.query(queries[what]):
                        empty.discard(what)
                return not empty

            assert await asyncio.to_thread(wait_until, all_return_data, 90, 1.0), "no data:\n" + "\n".join(
                sorted(empty)
            )

            # the SLI reads a bucket the service writes: the 5-minute burn rate is a number (NaN: the
            # objective's bucket matched no series), near 0 as the run's verdicts came in seconds
            (burn,) = await asyncio.to_thread(
                prometheus.query, f'namespace_job:moderation_latency_slo:burn_rate5m{{job="{JOB}"}}'
            )
            assert 0 <= float(burn["value"][1]) < 14.4, burn

            def rules_evaluated() -> bool:
                groups = prometheus.api("rules")["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                return len(rules) == len(alert_rules()) + len(recording_rules()) and all(
                    rule["health"] == "ok" and not rule["lastEvaluation"].startswith("0001-")
                    for rule in rules
                )

            assert await asyncio.to_thread(wait_until, rules_evaluated, 30, 0.5), prometheus.api("rules")
        finally:
            await asyncio.to_thread(prometheus.stop)
