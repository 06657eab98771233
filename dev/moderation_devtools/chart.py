"""The Helm chart's generated parts and the tools that check it.

``python -m moderation_devtools.chart`` brings ``helm/moderation-consumer`` in step with the repository
(``--check``: exit 1 when it is not, changing nothing):

- ``files/alerts.yaml`` and ``files/moderation.json``: copies of ``deploy/prometheus/alerts.yaml`` and
  ``deploy/grafana/moderation.json`` (Helm reads only files inside a chart);
- ``Chart.yaml``'s ``appVersion``: the package's ``__version__``;
- ``values.schema.json``'s ``settings``: the JSON schema of the service's settings models
  (``consumer.config.Settings``), less what the chart owns: every secret and its ``*_file`` twin
  (they come from the mounted Secret), ``policy_file`` and ``kafka.transactional_id``. So a setting
  the service does not know, or a value of the wrong type, is refused at install, and a key put in
  the values is too. The rest of the schema is written by hand.

``ensure_helm()`` takes the ``helm`` on PATH when it is 3.x at ``HELM_MINIMUM`` or later; otherwise it
installs ``helm`` with ``go install`` (``HELM_MODULE`` at ``HELM_VERSION``) into ``<cache>/bin``
(``moderation_devtools.broker.cache_dir()``: ``MODERATION_CACHE_DIR`` or ``~/.cache/moderation-consumer``)
when it is missing or another version; ``make helm`` runs it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

import consumer
from consumer.config import Settings
from moderation_devtools import REPO
from moderation_devtools.broker import cache_dir

__all__ = [
    "CHART",
    "COPIES",
    "HELM_MINIMUM",
    "HELM_MODULE",
    "HELM_VERSION",
    "KUBE_VERSION",
    "SCHEMA",
    "chart_owned_settings",
    "ensure_helm",
    "helm",
    "helm_binary",
    "main",
    "manifests",
    "settings_schema",
    "sync",
    "template",
]

ROOT = REPO
CHART = ROOT / "helm" / "moderation-consumer"
SCHEMA = CHART / "values.schema.json"
CHART_YAML = CHART / "Chart.yaml"
COPIES = {
    ROOT / "deploy" / "prometheus" / "alerts.yaml": CHART / "files" / "alerts.yaml",
    ROOT / "deploy" / "grafana" / "moderation.json": CHART / "files" / "moderation.json",
}
# v3.22.0 is served by the Go module proxy but not approved on these machines
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.21.4"
# a helm on PATH is used from this version on (3.18: values schemas of JSON Schema draft 2020-12)
HELM_MINIMUM = (3, 18, 0)
KUBE_VERSION = "1.31.0"  # what `helm lint/template --kube-version` and kubernetes-validate check against

_SETTINGS_REF = "#/properties/settings/$defs/"
_ANNOTATIONS = ("title", "format", "writeOnly")  # schema keywords left out (pydantic's, not Helm's)
_APP_VERSION = re.compile(r'^appVersion: "[^"]*"$', re.M)


def chart_owned_settings() -> dict[str, set[str]]:
    """Settings the chart sets itself, by section ("" for top-level ones): each secret and its
    ``*_file`` (from the mounted Secret), ``policy_file`` and ``shadow_policy_file`` (from ``policy``
    and ``shadowPolicy``) and, in exactly-once
    mode, ``kafka.transactional_id`` (the pod's name)."""
    owned: dict[str, set[str]] = {"": {"policy_file", "shadow_policy_file"}, "kafka": {"transactional_id"}}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name, field in model.model_fields.items():
            if SecretStr in _types(field.annotation):
                owned.setdefault(section, set()).update({name, f"{name}_file"})
    return owned


def _types(annotation: Any) -> set[Any]:
    args = getattr(annotation, "__args__", None)
    return {annotation} if not args else {t for a in args for t in _types(a)}


def settings_schema() -> dict[str, Any]:
    """The ``settings`` value's schema: ``Settings``' own, self-contained (its definitions under its
    ``$defs``, referred to from the values schema's root), less the chart-owned settings."""
    schema = Settings.model_json_schema()
    owned = chart_owned_settings()
    for name in owned[""]:
        schema["properties"].pop(name, None)
    for section, names in owned.items():
        if not section:
            continue
        ref = schema["properties"][section]["$ref"].rsplit("/", 1)[-1]
        definition = schema["$defs"][ref]
        for name in names:
            definition["properties"].pop(name, None)
    schema["additionalProperties"] = False
    chart_set = [
        f"{section}.{name}" if section else name for section, names in owned.items() for name in names
    ]
    schema["description"] = (
        "The service's settings file (consumer/config.py), without secrets: "
        f"{', '.join(sorted(chart_set))} are the chart's"
    )
    schema.pop("title", None)
    cleaned: dict[str, Any] = _clean(schema)
    return cleaned


def _clean(node: Any) -> Any:
    """Pydantic's annotations dropped and its references pointed at ``properties.settings.$defs``."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs") and isinstance(value, dict):
            cleaned[key] = {name: _clean(sub) for name, sub in value.items()}
        elif key == "$ref" and isinstance(value, str):
            cleaned[key] = value.replace("#/$defs/", _SETTINGS_REF)
        elif key not in _ANNOTATIONS:
            cleaned[key] = _clean(value)
    return cleaned


def render_schema(current: dict[str, Any]) -> str:
    """``values.schema.json`` with its ``settings`` generated, the hand-written rest as it is."""
    schema = dict(current)
    schema["properties"] = {**current["properties"], "settings": settings_schema()}
    return json.dumps(schema, indent=2) + "\n"


def _chart_yaml(text: str) -> str:
    return _APP_VERSION.sub(f'appVersion: "{consumer.__version__}"', text)


def sync(check: bool = False) -> list[Path]:
    """The chart's files that differ from what they should be; written unless ``check``."""
    stale: list[Path] = []
    wanted: dict[Path, str] = {copy: source.read_text() for source, copy in COPIES.items()}
    wanted[SCHEMA] = render_schema(json.loads(SCHEMA.read_text()))
    wanted[CHART_YAML] = _chart_yaml(CHART_YAML.read_text())
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale


def helm_binary() -> Path:
    """The ``helm`` on PATH when it is new enough, else where ``make helm`` builds it (maybe not yet)."""
    return _path_helm() or cache_dir() / "bin" / "helm"


@functools.cache
def _path_helm() -> Path | None:
    """``helm`` on PATH when ``helm version`` says 3.x at ``HELM_MINIMUM`` or later, else None."""
    found = shutil.which("helm")
    if found is None:
        return None
    try:
        out = subprocess.run(
            [found, "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    if out.returncode != 0 or version is None:
        return None
    major, minor, patch = (int(part) for part in version.groups())
    return Path(found) if major == 3 and (major, minor, patch) >= HELM_MINIMUM else None


def _go() -> str | None:
    """The ``go`` command: on PATH, or where Go's own installer puts it."""
    found = shutil.which("go")
    return found or next((str(p) for p in (Path("/usr/local/go/bin/go"),) if p.exists()), None)


def _built_version(binary: Path) -> str | None:
    """The module version a Go binary was built from (``go version -m``), or None."""
    go = _go()
    if go is None or not binary.exists():
        return None
    out = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod" and parts[1] == "helm.sh/helm/v3":
            return parts[2]
    return None


def ensure_helm() -> Path:
    """``helm`` on PATH when new enough; else at ``HELM_VERSION`` in the cache, built with ``go install``."""
    on_path = _path_helm()
    if on_path is not None:
        return on_path
    binary = cache_dir() / "bin" / "helm"
    if _built_version(binary) == HELM_VERSION:
        return binary
    go = _go()
    if go is None:
        if binary.exists():  # built here before; without go its version cannot be read
            return binary
        raise RuntimeError("go is missing: helm is built with `go install` (install Go 1.24+)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(binary.parent), "CGO_ENABLED": "0"}
    subprocess.run([go, "install", f"{HELM_MODULE}@{HELM_VERSION}"], env=env, check=True)
    if _built_version(binary) != HELM_VERSION:
        raise RuntimeError(f"go install did not leave helm {HELM_VERSION} at {binary}")
    return binary


def helm(
    *args: str, values: dict[str, Any] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``helm ARGS [-f values]`` (the cached binary; its own homes in a temporary directory)."""
    binary = helm_binary()
    if not binary.exists():
        raise RuntimeError(f"helm is missing at {binary}: make helm")
    with tempfile.TemporaryDirectory(prefix="helm-") as tmp:
        extra: list[str] = []
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(values, sort_keys=False))
            extra = ["-f", str(path)]
        env = {
            **os.environ,
            **{f"HELM_{part}_HOME": str(Path(tmp) / part.lower()) for part in ("CACHE", "CONFIG", "DATA")},
        }
        return subprocess.run(
            [str(binary), *args, *extra],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )


def template(
    values: dict[str, Any] | None = None, *, release: str = "moderation", namespace: str = "moderation"
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart for ``KUBE_VERSION``."""
    return helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        values=values,
    )


def manifests(values: dict[str, Any] | None = None, **names: str) -> list[dict[str, Any]]:
    """The chart's rendered objects; RuntimeError with helm's message when it refuses the values."""
    done = template(values, **names)
    if done.returncode != 0:
        raise RuntimeError(f"helm template exited {done.returncode}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moderation_devtools.chart", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the chart is out of step")
    parser.add_argument("--helm", action="store_true", help=f"install helm {HELM_VERSION} if missing")
    args = parser.parse_args(argv)
    if args.helm:
        print(f"helm: {ensure_helm()}")
        return 0
    stale = sync(check=args.check)
    for path in stale:
        rel = path.relative_to(ROOT)
        print(
            f"{rel} is out of date: run python -m moderation_devtools.chart" if args.check else f"wrote {rel}"
        )
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
