"""The Helm chart's configuration boots the service. The chart is rendered (values pointing at the
test broker, the simulator and the registry); its ConfigMap, a fake Secret and the container's
environment are laid out on disk as the pod would see them (each volume's mount path under a
temporary root, the environment's paths moved there with it, the downward API's pod name and the
Secret's keys filled in), and ``python -m consumer run`` started with exactly that configuration
must become ready (and pass the ``helm test`` pod's own check), give verdicts under the chart's
policy and drain on SIGTERM. In both delivery
modes: the Deployment (at-least-once) and the StatefulSet (exactly-once, the pod's name as its
transactional_id). Before it, ``schemas register`` runs with the same configuration (the
pre-upgrade step of the README)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.config import load_settings
from consumer.core.records import Decision, MediaType
from consumer.schema_registry import codec_for
from moderation_devtools import chart
from moderation_devtools.broker import ensure_jars, free_port
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    produce_uploads,
    read_verdicts,
    upload,
    wait_until,
)
from moderation_simulator.state import DEFAULT_KEYS

from .conftest import Topics

pytestmark = pytest.mark.integration

SECRET = "moderation-keys"
POLICY_VERSION = "chart-boot-1"
# the Secret an operator creates (kubectl create secret generic moderation-keys --from-file=…)
FAKE_SECRET = {
    "hive-visual-key": DEFAULT_KEYS["visual"],
    "hive-text-key": DEFAULT_KEYS["text"],
    "hive-csam-key": DEFAULT_KEYS["csam"],
    "hive-index-key": DEFAULT_KEYS["index"],
    "callbacks-token": "chart-callbacks-token",
    # secret librdkafka properties, merged into settings.kafka.client_config
    "kafka-client-config": json.dumps({"client.id": "moderation-chart-boot"}),
}


def chart_values(
    kafka_bootstrap: str,
    sim: SimulatorProcess,
    registry_url: str,
    topics: Topics,
    delivery: str,
    health_port: int,
) -> dict[str, Any]:
    shipped = Path(__file__).resolve().parents[2] / "consumer" / "policy" / "default_policy.yaml"
    policy = "\n".join(
        f"version: {POLICY_VERSION}" if line.startswith("version:") else line
        for line in shipped.read_text().splitlines()
    )
    return {
        "replicaCount": 1,
        "autoscaling": {"inputPartitions": 4},
        "settings": {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": topics.group,
                "create_topics": False,
                "commit_interval_ms": 100,
                **topics.env(),
            },
            "hive": {"base_url": sim.url},
            "schema_registry": {"url": registry_url},
            "processing": {"delivery": delivery, "drain_timeout_s": 10},
            "health": {"host": "127.0.0.1", "port": health_port},
            "callbacks": {"host": "127.0.0.1", "port": free_port(), "poll_interval_s": 1},
            "media": {"allow_networks": ["127.0.0.1/32"]},
        },
        "policy": policy,
        "secrets": {"existingSecret": SECRET, "keys": {"kafka_client_config": "kafka-client-config"}},
    }


def pod_layout(
    docs: list[dict[str, Any]], root: Path, secret: dict[str, str]
) -> tuple[dict[str, str], list[str], str]:
    """The workload's volumes laid out under ``root`` (``root/<mountPath>``), and the container's
    environment (its paths moved under ``root``), arguments and pod name."""
    (work,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    pod = work["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_name = f"{work['metadata']['name']}-0"  # a StatefulSet's first pod (a Deployment's name is random)
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounts: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (target / key).write_text(text)
        elif "secret" in volume:
            assert volume["secret"]["secretName"] == SECRET
            for item in volume["secret"]["items"]:
                path = target / item["path"]
                path.write_text(secret[item["key"]])
                path.chmod(volume["secret"]["defaultMode"])
        else:
            assert "emptyDir" in volume, f"volume {mount['name']} is not laid out by this test"
        mounts[mount["mountPath"]] = target

    def moved(value: str) -> str:
        for path in sorted(mounts, key=len, reverse=True):
            if value == path or value.startswith(path + "/"):
                return str(mounts[path]) + value[len(path) :]
        return value

    env: dict[str, str] = {}
    for var in container["env"]:
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = moved(var["value"])
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod_name
        elif "secretKeyRef" in source:
            assert source["secretKeyRef"]["name"] == SECRET
            env[var["name"]] = secret[source["secretKeyRef"]["key"]]
        else:
            raise AssertionError(f"{var['name']}: a source this test does not fill in: {source}")
    env["TMPDIR"] = moved("/tmp")  # the image's TMPDIR, on the emptyDir
    return env, list(container.get("args", [])), pod_name


def process_env(pod_env: dict[str, str]) -> dict[str, str]:
    """This machine's environment (PATH, the venv) without any setting of ours, and the pod's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODERATION_", "OTEL_"))}
    return {**base, **pod_env}


def tail(path: Path, lines: int = 15) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no output)"
    )


def transaction_of(bootstrap: str, transactional_id: str) -> subprocess.CompletedProcess[str]:
    """``kafka-transactions.sh describe`` (Kafka's own tool, from the broker's jars)."""
    java = shutil.which("java")
    assert java, "java is needed for Kafka's TransactionsCommand"
    return subprocess.run(
        [
            java,
            "-cp",
            f"{ensure_jars()}/*",
            "org.apache.kafka.tools.TransactionsCommand",
            "--bootstrap-server",
            bootstrap,
            "describe",
            "--transactional-id",
            transactional_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_the_charts_configuration_boots_the_service_and_gives_verdicts(
    delivery: str,
    kafka_bootstrap: str,
    sim: SimulatorProcess,
    registry_url: str,
    topics: Topics,
    tmp_path: Path,
    png: Any,
) -> None:
    health_port = free_port()
    values = chart_values(kafka_bootstrap, sim, registry_url, topics, delivery, health_port)
    docs = chart.manifests(values, release=f"boot-{topics.group[-8:]}", namespace="moderation")
    kinds = {d["kind"] for d in docs}
    assert ("StatefulSet" if delivery == "exactly_once" else "Deployment") in kinds
    pod_env, args, pod_name = pod_layout(docs, tmp_path / "pod", FAKE_SECRET)
    assert pod_env["MODERATION_CONFIG"] == str(tmp_path / "pod" / "etc" / "moderation" / "settings.yaml")
    assert not any(k.endswith("_KEY") or k.endswith("__TOKEN") for k in pod_env)  # keys come as files
    env = process_env(pod_env)

    # the release pipeline's step before rolling out, with the pods' configuration
    registered = subprocess.run(
        [sys.executable, "-m", "consumer", "schemas", "register"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert registered.returncode == 0, f"schemas register exited {registered.returncode}: {registered.stderr}"

    log = tmp_path / "consumer.log"
    service = ConsumerProcess(env, log_path=log, args=args).start()
    try:

        def ready() -> bool:
            if not service.alive:
                return True  # stop waiting: it exited (reported below)
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=2).status_code == 200
            return False

        became = wait_until(ready, 90, 0.2)
        assert service.alive, (
            f"the service exited {service.process.returncode if service.process else '?'} with the chart's"
            f" configuration (2: a setting it refused, named on stderr):\n{tail(log)}"
        )
        assert became, f"/readyz did not answer 200 within 90 s:\n{tail(log)}"
        # the `helm test` pod's own check, against this service's /readyz instead of the Service's
        (test_pod,) = [d for d in docs if d["kind"] == "Pod"]
        (check,) = test_pod["spec"]["containers"]
        assert check["args"][1].endswith(f":{health_port}/readyz")
        readyz = f"http://127.0.0.1:{health_port}/readyz"
        helm_test = subprocess.run(
            [sys.executable, "-c", check["args"][0], readyz, "30"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert helm_test.returncode == 0 and " 200 " in helm_test.stdout, helm_test.stderr

        uploads = [
            upload(MediaType.TEXT, text="a friendly comment about the weather"),
            upload(MediaType.IMAGE, data=png(7), content_type="image/png"),
        ]
        produce_uploads(kafka_bootstrap, topics.input, uploads)
        with contextlib.closing(codec_for(load_settings(schema_registry={"url": registry_url}))) as codec:
            verdicts = read_verdicts(
                kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=90, codec=codec
            )
        by_id = {v.upload_id: v for v in verdicts}
        assert set(by_id) == {u.upload_id for u in uploads}, f"missing verdicts:\n{tail(log)}"
        for verdict in by_id.values():
            assert verdict.decision in set(Decision)
            assert verdict.policy_version == POLICY_VERSION  # the chart's policy file, not the shipped one

        if delivery == "exactly_once":
            described = transaction_of(kafka_bootstrap, pod_name)
            assert described.returncode == 0, described.stderr
            assert pod_name in described.stdout  # the pod's name is the producer's transactional.id
    finally:
        code = service.terminate(60)
    assert code == 0, f"SIGTERM: exit {code}, expected a drain and 0:\n{tail(log)}"
