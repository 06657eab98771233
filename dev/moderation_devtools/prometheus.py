"""A real Prometheus for tests (Debian's ``prometheus`` package: ``make prometheus``) and the
queries the shipped monitoring uses: the dashboard's targets and the alert rules' expressions,
with what each needs to return data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from moderation_devtools import REPO
from moderation_devtools.broker import free_port

__all__ = [
    "ALERTS",
    "DASHBOARD",
    "RUNBOOK",
    "PrometheusServer",
    "alert_rules",
    "dashboard_targets",
    "data_queries",
    "metric_names",
]

ROOT = REPO
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "moderation.json"
RUNBOOK = ROOT / "docs" / "runbook.md"

_SET_OPERATOR = re.compile(r"\s(?:and|or|unless)(?:\s+(?:on|ignoring)\s*\([^)]*\))?\s")
_THRESHOLD = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?-?[0-9.]+(?:e[+-]?[0-9]+)?\s*$")
_ABSENT = re.compile(r"absent\((.*)\)", re.S)
_METRIC = re.compile(r"\b((?:moderation|process|python)_[a-z0-9_]+)\b")


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every alerting rule of the rule file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _split_top_level(expr: str) -> list[str]:
    """``expr`` cut at its set operators (``and``, ``or``, ``unless``) outside any parentheses."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        char = expr[i]
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif depth == 0 and (found := _SET_OPERATOR.match(expr, i)):
            parts.append(expr[start:i])
            start = i = found.end()
            continue
        i += 1
    parts.append(expr[start:])
    return [part.strip() for part in parts if part.strip()]


def data_queries(expr: str) -> list[str]:
    """What an alert's expression is made of, each of which must return data from a running
    service: each operand of its set operators with its threshold comparison stripped, and for
    ``absent(x)`` (which returns data only when ``x`` returns none) ``x`` itself."""
    found = []
    for operand in _split_top_level(expr):
        operand = _THRESHOLD.sub("", operand).strip()
        if absent := _ABSENT.fullmatch(operand):
            operand = absent.group(1).strip()
        found.append(operand)
    return found


def dashboard_targets(path: Path = DASHBOARD) -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every target of every panel."""
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


@dataclass
class PrometheusServer:
    """``prometheus`` in its own directory on a free loopback port, scraping ``targets`` (job
    ``job``, with ``labels`` on every series) every ``scrape_interval_s`` and evaluating
    ``rule_files``; stopped and its data removed by ``stop()``."""

    workdir: Path
    targets: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    job: str = "moderation"
    scrape_interval_s: float = 1.0
    rule_files: list[Path] = field(default_factory=list)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> Self:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is missing: make prometheus (Debian's prometheus package)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "static_configs": [{"targets": self.targets, "labels": self.labels}],
                }
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.port = free_port()
        log = (self.workdir / "prometheus.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        from moderation_devtools.stack import wait_until

        if not wait_until(self._ready, timeout_s, poll_s=0.2):
            self.stop()
            raise RuntimeError(f"prometheus did not become ready; see {self.workdir / 'prometheus.log'}")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited; see {self.workdir / 'prometheus.log'}")
        try:
            return httpx.get(self.url + "/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """``/api/v1/<path>``'s ``data``; raises on an error answer (a query that does not parse)."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
