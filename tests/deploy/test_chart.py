"""The Helm chart with the real helm: ``helm lint --strict``, ``helm template`` of six value sets
validated by kubernetes-validate for Kubernetes ``KUBE_VERSION`` (the custom resources, which it does
not know, by their shape here), the objects' structure, every pod within the restricted Pod Security
Standard, the ``helm test`` pod's check run against real HTTP, and values the chart must refuse."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import consumer
from consumer.config import load_settings
from consumer.policy.tenants import load_policies
from moderation_devtools import chart

pytestmark = pytest.mark.deploy

SECRET = "moderation-keys"
RELEASE = "mod"
FULLNAME = f"{RELEASE}-moderation-consumer"
NATIVE = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "NetworkPolicy",
    "Pod",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}

EXACTLY_ONCE: dict[str, Any] = {
    "replicaCount": 3,
    "settings": {"processing": {"delivery": "exactly_once", "drain_timeout_s": 40}},
    "secrets": {"existingSecret": SECRET},
}
KEDA_MONITORING: dict[str, Any] = {
    "secrets": {"existingSecret": SECRET},
    "autoscaling": {
        "inputPartitions": 12,
        "keda": {
            "enabled": True,
            "maxReplicaCount": 12,
            "secretTargetRef": [
                {"parameter": "sasl", "key": "keda-sasl"},
                {"parameter": "username", "key": "keda-username"},
                {"parameter": "password", "key": "keda-password"},
                {"parameter": "tls", "key": "keda-tls"},
            ],
        },
    },
    "monitoring": {
        "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {
            "enabled": True,
            "runbookBaseUrl": "https://git.example.com/moderation/blob/main/",
        },
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Moderation"}},
    },
}
POLICY_TEXT = """\
# thresholds for production
version: prod-2026.12
classification:
  visual:
    general_nsfw: {review: 0.5, block: 0.9}
  text:
    violence: {review: 0.5, block: 0.9}
similarity: {review: 0.85, block: 0.9}
fail_open: []
"""
EVERYTHING: dict[str, Any] = {
    "image": {"repository": "registry.example.com/moderation-consumer", "tag": "0.1.0"},
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "workers": 2,
    "settings": {
        "kafka": {
            "bootstrap_servers": "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096",
            "group_id": "moderation-prod",
            "input_topic": "uploads",
            "create_topics": False,
            "client_config": {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "moderation",
            },
        },
        "schema_registry": {"url": "https://registry.example.com"},
        "processing": {"drain_timeout_s": 42.5, "similarity": "huawei", "max_in_flight": 512},
        "huawei": {"project_id": "proj", "instance": "moderation"},
        "limits": {"rate_per_s": {"visual": 50}},
        "media": {"deny_networks": ["10.0.0.0/8"]},
        "log_level": "WARNING",
    },
    "policy": POLICY_TEXT,
    "secrets": {
        "existingSecret": SECRET,
        "keys": {
            "huawei_token": "huawei-token",
            "schema_registry_basic_auth_user_info": "registry-user-info",
            "kafka_client_config": "kafka-client-config",
        },
    },
    "extraEnv": [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4318"}
    ],
    "extraVolumes": [{"name": "kafka-ca", "configMap": {"name": "kafka-ca"}}],
    "extraVolumeMounts": [{"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True}],
    "podAnnotations": {"example.com/team": "trust-and-safety"},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "moderation", "effect": "NoSchedule"}],
    "priorityClassName": "high",
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/moderation"}},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "moderation.example.com",
        "tls": [{"secretName": "moderation-tls", "hosts": ["moderation.example.com"]}],
    },
    "autoscaling": {
        "inputPartitions": 24,
        "keda": {
            "enabled": True,
            "maxReplicaCount": 12,
            "authenticationRef": "kafka-sasl",
            "extraMetadata": {"sasl": "scram_sha512", "tls": "enable"},
        },
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "interval": "15s"},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "labels": {"team": "moderation"}},
    },
    "networkPolicy": {
        "egress": {
            "kafka": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [9096]},
            "schemaRegistry": {"to": [{"ipBlock": {"cidr": "10.21.0.0/16"}}], "ports": [443]},
            "extra": [
                {
                    "ports": [{"port": 4318, "protocol": "TCP"}],
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                            }
                        }
                    ],
                }
            ],
        },
        "ingress": {
            "metrics": {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                ]
            },
        },
    },
}
HPA_EXACTLY_ONCE: dict[str, Any] = {
    **EXACTLY_ONCE,
    "autoscaling": {"inputPartitions": 6, "hpa": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}},
}
OPENSHIFT_VALUES = chart.CHART / "examples" / "values-openshift.yaml"
# every value that bends the chart: OpenShift's contexts (no fixed UID, GID or fsGroup), labels,
# annotations, an init container, envFrom, a lifecycle hook, a restricted metrics ingress
BENT: dict[str, Any] = {
    **yaml.safe_load(OPENSHIFT_VALUES.read_text()),
    "settings": {"processing": {"delivery": "exactly_once"}},
    "secrets": {"existingSecret": SECRET},
    "commonLabels": {"team": "trust-and-safety", "cost-center": "cc-42"},
    "podLabels": {"tier": "backend", "team": "moderation-oncall"},
    "podAnnotations": {"example.com/owner": "trust-and-safety"},
    "extraInitContainers": [
        {
            "name": "wait-for-proxy",
            "image": "registry.example.com/wait:1.0",
            "command": ["wait-for", "127.0.0.1:15000"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        },
        {
            "name": "own-context",
            "image": "registry.example.com/ca-bundle:1.0",
            "securityContext": {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        },
    ],
    "envFrom": [
        {"configMapRef": {"name": "moderation-env"}},
        {"secretRef": {"name": "moderation-otel", "optional": True}, "prefix": "OTEL_"},
    ],
    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    "networkPolicy": {
        "ingress": {
            "metrics": {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                ]
            }
        }
    },
    "helmTest": {"enabled": True, "deadlineSeconds": 300},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "exactly_once": EXACTLY_ONCE,
    "keda_monitoring": KEDA_MONITORING,
    "everything": EVERYTHING,
    "hpa_exactly_once": HPA_EXACTLY_ONCE,
    "bent": BENT,
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return chart.manifests(values, release=RELEASE, namespace="moderation")


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects: {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Pod", f"{FULLNAME}-test-readiness")


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = workload(docs)["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


def settings_file(docs: list[dict[str, Any]]) -> dict[str, Any]:
    data = yaml.safe_load(one(docs, "ConfigMap", FULLNAME)["data"]["settings.yaml"])
    assert isinstance(data, dict)
    return data


def with_values(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with dotted paths set: ``with_values(v, **{"settings.log_level": "DEBUG"})``."""
    values = copy.deepcopy(base)
    for path, value in changes.items():
        node = values
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


# --- the custom resources' shape (kubernetes-validate has no schema for CRDs) -----------------------

STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}
METADATA = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": STRINGS,
        "annotations": STRINGS,
    },
    "additionalProperties": False,
}


def resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


def closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


SELECTOR = closed({"matchLabels": STRINGS}, ["matchLabels"])
SCRAPE = closed(
    {"port": {"type": "string"}, "path": {"type": "string"}, "interval": DURATION, "scrapeTimeout": DURATION},
    ["port", "path"],
)
CRDS: dict[str, dict[str, Any]] = {
    # keda.sh/v1alpha1 (KEDA 2.x): the fields the chart writes, as KEDA's CRD types them
    "ScaledObject": resource(
        "keda.sh/v1alpha1",
        "ScaledObject",
        closed(
            {
                "scaleTargetRef": closed(
                    {
                        "apiVersion": {"type": "string"},
                        "kind": {"enum": ["Deployment", "StatefulSet"]},
                        "name": {"type": "string"},
                    },
                    ["name"],
                ),
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": closed(
                    {
                        "horizontalPodAutoscalerConfig": closed(
                            {
                                "behavior": closed(
                                    {
                                        "scaleDown": closed(
                                            {"stabilizationWindowSeconds": {"type": "integer", "minimum": 0}},
                                            ["stabilizationWindowSeconds"],
                                        )
                                    },
                                    [],
                                )
                            },
                            [],
                        )
                    },
                    [],
                ),
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {
                            "type": {"type": "string"},
                            "metadata": STRINGS,  # KEDA's trigger metadata is map[string]string
                            "authenticationRef": closed(
                                {"name": {"type": "string"}, "kind": {"type": "string"}}, ["name"]
                            ),
                        },
                        ["type", "metadata"],
                    ),
                },
            },
            ["scaleTargetRef", "triggers"],
        ),
    ),
    "TriggerAuthentication": resource(
        "keda.sh/v1alpha1",
        "TriggerAuthentication",
        closed(
            {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                        ["parameter", "name", "key"],
                    ),
                }
            },
            ["secretTargetRef"],
        ),
    ),
    # monitoring.coreos.com/v1 (Prometheus Operator)
    "PodMonitor": resource(
        "monitoring.coreos.com/v1",
        "PodMonitor",
        closed(
            {"selector": SELECTOR, "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": SCRAPE}},
            ["selector", "podMetricsEndpoints"],
        ),
    ),
    "ServiceMonitor": resource(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        closed(
            {"selector": SELECTOR, "endpoints": {"type": "array", "minItems": 1, "items": SCRAPE}},
            ["selector", "endpoints"],
        ),
    ),
    "PrometheusRule": resource(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        closed(
            {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {
                            "name": {"type": "string"},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": closed(
                                    {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": DURATION,
                                        "labels": STRINGS,
                                        "annotations": STRINGS,
                                    },
                                    ["expr"],
                                ),
                            },
                        },
                        ["name", "rules"],
                    ),
                }
            },
            ["groups"],
        ),
    ),
}


def validate(doc: dict[str, Any]) -> None:
    """kubernetes-validate (strict: no unknown field) for built-in kinds; the shape above for CRDs."""
    if doc["kind"] in NATIVE:
        kubernetes_validate.validate(doc, chart.KUBE_VERSION, strict=True)
    else:
        assert doc["kind"] in CRDS, f"unexpected kind {doc['kind']}"
        jsonschema.Draft202012Validator(CRDS[doc["kind"]]).validate(doc)


# --- lint and validation of every value set ----------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict_passes(name: str) -> None:
    done = chart.helm(
        "lint", str(chart.CHART), "--strict", "--kube-version", chart.KUBE_VERSION, values=VALUE_SETS[name]
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_validates(name: str) -> None:
    docs = render(VALUE_SETS[name])
    for doc in docs:
        try:
            validate(doc)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")


class _UniqueKeys(yaml.SafeLoader):
    """A loader that refuses a key twice in one mapping (as the API server's strict decoding does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = {k for k in keys if keys.count(k) > 1}
        assert not twice, f"{twice} twice at line {node.start_mark.line + 1}"
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_no_rendered_mapping_has_a_key_twice(name: str) -> None:
    values = with_values(VALUE_SETS[name], commonLabels={"team": "trust-and-safety", "release": "x"})
    done = chart.template(values, release=RELEASE)
    assert done.returncode == 0, done.stderr
    assert [d for d in yaml.load_all(done.stdout, Loader=_UniqueKeys) if d]


def test_the_value_sets_render_what_they_switch_on() -> None:
    assert kinds(render()) == {
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    }
    assert kinds(render(EXACTLY_ONCE)) == {
        "ConfigMap",
        "StatefulSet",
        "NetworkPolicy",
        "Pod",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    }
    assert {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"} <= kinds(
        render(KEDA_MONITORING)
    )
    everything = kinds(render(EVERYTHING))
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule", "Ingress"} <= everything
    assert "TriggerAuthentication" not in everything and "HorizontalPodAutoscaler" not in everything
    assert "HorizontalPodAutoscaler" in kinds(render(HPA_EXACTLY_ONCE))


def docs_example() -> dict[str, Any]:
    """The ``values-prod.yaml`` block of docs/deploying.md."""
    text = (chart.ROOT / "docs" / "deploying.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    (example,) = [b for b in blocks if b.startswith("# values-prod.yaml")]
    values = yaml.safe_load(example)
    assert isinstance(values, dict)
    return values


def test_the_docs_values_example_renders_validates_and_its_settings_and_policy_load(
    tmp_path: Path,
) -> None:
    values = docs_example()
    done = chart.helm(
        "lint", str(chart.CHART), "--strict", "--kube-version", chart.KUBE_VERSION, values=values
    )
    assert done.returncode == 0, done.stdout + done.stderr
    docs = render(values)
    for doc in docs:
        validate(doc)
    assert {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule", "Ingress"} <= kinds(docs)
    settings = load_settings(**settings_file(docs))
    assert settings.callbacks.public_url == "https://moderation.example.com"
    policy = tmp_path / "policy.yaml"
    policy.write_text(one(docs, "ConfigMap", f"{FULLNAME}-policy")["data"]["policy.yaml"])
    assert load_policies(policy).version == "prod-2026.12"
    # its traces get through its NetworkPolicy to the collector it names, on the collector's port
    endpoint = {e["name"]: e.get("value") for e in values["extraEnv"]}["OTEL_EXPORTER_OTLP_ENDPOINT"]
    egress = one(docs, "NetworkPolicy", FULLNAME)["spec"]["egress"]
    assert int(endpoint.rsplit(":", 1)[1]) in {p["port"] for rule in egress for p in rule["ports"]}
    assert all(d["metadata"]["labels"]["team"] == "trust-and-safety" for d in docs)


# --- the workload ------------------------------------------------------------------------------------


def test_at_least_once_runs_as_a_deployment_that_rolls_without_a_surge_pod() -> None:
    docs = render()
    deployment = one(docs, "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert "MODERATION_KAFKA__TRANSACTIONAL_ID" not in env_of(docs)
    assert "args" not in container(docs)


def test_exactly_once_runs_as_a_statefulset_whose_pod_name_is_the_transactional_id() -> None:
    docs = render(EXACTLY_ONCE)
    sts = one(docs, "StatefulSet", FULLNAME)
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert env_of(docs)["MODERATION_KAFKA__TRANSACTIONAL_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert not [d for d in docs if d["kind"] == "Deployment"]


def test_workers_run_as_arguments_and_count_against_the_partitions() -> None:
    docs = render(with_values({}, workers=3, replicaCount=4))
    assert container(docs)["args"] == ["--workers", "3"]


def test_settings_and_policies_come_from_configmaps_and_only_a_settings_change_rolls_the_pods() -> None:
    docs = render(with_values(EVERYTHING, shadowPolicy={"version": "candidate"}))
    config, policies = one(docs, "ConfigMap", FULLNAME), one(docs, "ConfigMap", f"{FULLNAME}-policy")
    assert settings_file(docs)["kafka"]["client_config"]["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings_file(docs)["processing"]["max_in_flight"] == 512
    assert "policy.yaml" not in config["data"]
    assert policies["data"]["policy.yaml"].strip() == POLICY_TEXT.strip()  # the text, comments and all
    assert policies["data"]["shadow.yaml"].strip() == "version: candidate"
    env = env_of(docs)
    assert env["MODERATION_CONFIG"] == "/etc/moderation/settings.yaml"
    assert env["MODERATION_POLICY_FILE"] == "/etc/moderation-policy/policy.yaml"
    assert env["MODERATION_SHADOW_POLICY_FILE"] == "/etc/moderation-policy/shadow.yaml"
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/moderation" and mounts["config"]["readOnly"]
    # a directory, never subPath: the kubelet's symlink swap reaches the running pod (hot reload)
    assert mounts["policy"]["mountPath"] == "/etc/moderation-policy" and "subPath" not in mounts["policy"]
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert volumes["policy"]["configMap"]["name"] == f"{FULLNAME}-policy"

    def checksum(values: dict[str, Any]) -> str:
        annotations = workload(render(values))["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    base = checksum(EVERYTHING)
    assert checksum(with_values(EVERYTHING, **{"settings.log_level": "DEBUG"})) != base
    assert checksum(with_values(EVERYTHING, policy=POLICY_TEXT.replace("0.85", "0.8"))) == base  # reloaded
    assert checksum(with_values(EVERYTHING, priorityClassName="low")) == base
    assert "MODERATION_POLICY_FILE" not in env_of(render())  # no policy: the image's own
    assert f"{FULLNAME}-policy" not in {d["metadata"]["name"] for d in render() if d["kind"] == "ConfigMap"}


def test_keys_are_files_from_the_existing_secret_and_the_chart_renders_none() -> None:
    docs = render(EVERYTHING)
    assert "Secret" not in kinds(docs)
    env = env_of(docs)
    mount = "/var/run/secrets/moderation"
    expected_files = {
        "MODERATION_HIVE__VISUAL_KEY_FILE": "hive-visual-key",
        "MODERATION_HIVE__TEXT_KEY_FILE": "hive-text-key",
        "MODERATION_HIVE__CSAM_KEY_FILE": "hive-csam-key",
        "MODERATION_HIVE__INDEX_KEY_FILE": "hive-index-key",
        "MODERATION_HUAWEI__TOKEN_FILE": "huawei-token",
        "MODERATION_CALLBACKS__TOKEN_FILE": "callbacks-token",
        "MODERATION_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO_FILE": "registry-user-info",
    }
    for variable, key in expected_files.items():
        assert env[variable] == f"{mount}/{key}"
    assert "MODERATION_SCHEMA_REGISTRY__BEARER_TOKEN_FILE" not in env  # its key is ""
    assert env["MODERATION_KAFKA__CLIENT_CONFIG"] == {
        "secretKeyRef": {"name": SECRET, "key": "kafka-client-config"}
    }
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    secret = volumes["secrets"]["secret"]
    assert secret["secretName"] == SECRET
    assert {i["key"]: i["path"] for i in secret["items"]} == {k: k for k in expected_files.values()}
    assert secret["defaultMode"] == 0o440
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["secrets"]["mountPath"] == mount and mounts["secrets"]["readOnly"]
    # without a Secret nothing is mounted (NOTES.txt says what to create)
    defaults = render()
    assert not [e for e in env_of(defaults) if e.endswith("_FILE")]
    assert "secrets" not in {m["name"] for m in container(defaults)["volumeMounts"]}


def test_probes_ports_and_grace_period_follow_the_settings() -> None:
    docs = render()
    c = container(docs)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "callbacks": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert workload(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 25 + 15
    moved = render(with_values({}, **{"settings.health.port": 9100, "settings.callbacks.port": 9101}))
    assert {p["name"]: p["containerPort"] for p in container(moved)["ports"]} == {
        "health": 9100,
        "callbacks": 9101,
    }
    service = one(moved, "Service", FULLNAME)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"health": 9100, "callbacks": 9101}
    # ceil(42.5) + 15 and 40 + 15: one number, the drain deadline
    assert workload(render(EVERYTHING))["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 58
    assert workload(render(EXACTLY_ONCE))["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 55


def restricted(pod: dict[str, Any], where: str) -> None:
    """The restricted Pod Security Standard (Kubernetes' pod-security admission, "restricted" level,
    latest) holds for a pod spec and each of its containers."""
    pod_sc = pod.get("securityContext", {})
    assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, where
    for volume in pod.get("volumes", []):
        assert "hostPath" not in volume, where
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        sc = c.get("securityContext", {})
        name = f"{where}/{c['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, name
        assert sc.get("privileged") is not True, name
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
        assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, name
        assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True, name
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, name
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost"), name


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_within_the_restricted_pod_security_standard(name: str) -> None:
    docs = render(VALUE_SETS[name])
    restricted(workload(docs)["spec"]["template"]["spec"], f"{name}: workload")
    restricted(helm_test_pod(docs)["spec"], f"{name}: helm test pod")


def test_a_restricted_security_context_and_a_writable_tmp() -> None:
    for values in (VALUE_SETS["defaults"], EXACTLY_ONCE):
        docs = render(values)
        pod = workload(docs)["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert pod["automountServiceAccountToken"] is False
        sc = container(docs)["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
        tmp = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}["tmp"]
        assert tmp == "/tmp"
        assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}["tmp"]


def test_openshift_values_leave_the_uid_gid_and_fsgroup_to_the_namespace() -> None:
    """restricted-v2 assigns them from the namespace's range and refuses a pod that names others."""
    openshift = yaml.safe_load(OPENSHIFT_VALUES.read_text())
    done = chart.helm(
        "lint", str(chart.CHART), "--strict", "--kube-version", chart.KUBE_VERSION, values=openshift
    )
    assert done.returncode == 0, done.stdout + done.stderr
    docs = render(openshift)
    for where, pod in (
        ("workload", workload(docs)["spec"]["template"]["spec"]),
        ("helm test", helm_test_pod(docs)["spec"]),
    ):
        assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        for c in pod["containers"]:
            assert c["securityContext"] == {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }, where
        restricted(pod, where)


def test_the_security_contexts_are_the_values() -> None:
    docs = render(
        {
            "podSecurityContext": {"runAsUser": 2000, "fsGroupChangePolicy": "OnRootMismatch"},
            "securityContext": {"runAsUser": 2000, "readOnlyRootFilesystem": False},
        }
    )
    pod = workload(docs)["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == 2000 and pod["fsGroupChangePolicy"] == "OnRootMismatch"
    assert pod["fsGroup"] == 10001  # the rest of the default stays
    sc = container(docs)["securityContext"]
    assert sc["runAsUser"] == 2000 and sc["readOnlyRootFilesystem"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert helm_test_pod(docs)["spec"]["containers"][0]["securityContext"] == sc


def test_common_labels_are_on_every_object_and_the_pods_carry_the_standard_labels() -> None:
    seen: set[str] = set()
    for base in (KEDA_MONITORING, EVERYTHING, HPA_EXACTLY_ONCE):
        values = with_values(base, commonLabels=BENT["commonLabels"], shadowPolicy={"version": "candidate"})
        for doc in render(values):
            labels = doc["metadata"]["labels"]
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            assert labels["cost-center"] == "cc-42" and "team" in labels, where
            assert labels["app.kubernetes.io/instance"] == RELEASE, where
            assert labels["app.kubernetes.io/managed-by"] == "Helm", where
            seen.add(doc["kind"])
    assert seen >= NATIVE | set(CRDS)  # every kind the chart makes
    # an object's own labels win over commonLabels (one key, not two)
    dashboard = one(
        render(with_values(EVERYTHING, commonLabels=BENT["commonLabels"])),
        "ConfigMap",
        f"{FULLNAME}-dashboard",
    )
    assert dashboard["metadata"]["labels"]["team"] == "moderation"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    docs = render(BENT)
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {
        "app.kubernetes.io/name": "moderation-consumer",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": consumer.__version__,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/component": "consumer",
        "helm.sh/chart": f"moderation-consumer-{yaml.safe_load(chart.CHART_YAML.read_text())['version']}",
        "team": "moderation-oncall",  # podLabels win over commonLabels
        "cost-center": "cc-42",
        "tier": "backend",
    }
    # the selector stays the two selector labels: an upgrade that adds labels keeps it
    assert workload(docs)["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "moderation-consumer",
        "app.kubernetes.io/instance": RELEASE,
    }
    annotations = workload(docs)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "trust-and-safety" and "checksum/config" in annotations


def test_init_containers_env_from_and_lifecycle_are_rendered_where_they_belong() -> None:
    docs = render(BENT)
    pod = workload(docs)["spec"]["template"]["spec"]
    wait, own = pod["initContainers"]
    assert wait["name"] == "wait-for-proxy" and wait["command"] == ["wait-for", "127.0.0.1:15000"]
    assert wait["securityContext"] == container(docs)["securityContext"]  # none given: the container's
    assert own["securityContext"] == BENT["extraInitContainers"][1]["securityContext"]  # its own
    c = container(docs)
    assert c["envFrom"] == BENT["envFrom"]
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert "MODERATION_CONFIG" in env_of(docs)  # envFrom beside env, not instead
    defaults = render()
    pod = workload(defaults)["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert "envFrom" not in container(defaults) and "lifecycle" not in container(defaults)


# --- helm test -----------------------------------------------------------------------------------------


def test_the_helm_test_pod_asks_the_services_readyz_with_the_product_image() -> None:
    docs = render(EVERYTHING)
    pod = helm_test_pod(docs)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == container(docs)["image"] == "registry.example.com/moderation-consumer:0.1.0"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert c["args"][1] == f"http://{FULLNAME}.moderation.svc:8080/readyz"
    service = one(docs, "Service", FULLNAME)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["health"] == 8080
    # not one of the pods: the Service, the disruption budget and the NetworkPolicy do not select it
    selector = workload(docs)["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    # a NetworkPolicy that limits who reads the health port lets it in
    policy = one(render(BENT), "NetworkPolicy", FULLNAME)["spec"]
    health_from = policy["ingress"][1]["from"]
    assert {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "moderation-consumer-test",
                "app.kubernetes.io/instance": RELEASE,
            }
        }
    } in health_from
    assert helm_test_pod(render(BENT))["metadata"]["labels"].items() >= (
        health_from[-1]["podSelector"]["matchLabels"].items()
    )
    assert "Pod" not in kinds(render({"helmTest": {"enabled": False}}))


class _Readyz(BaseHTTPRequestHandler):
    """/readyz: 503 for the first ``not_ready`` requests, then 200."""

    not_ready = 2
    asked = 0

    def do_GET(self) -> None:
        type(self).asked += 1
        ready = self.path == "/readyz" and type(self).asked > type(self).not_ready
        body = b"ready" if ready else b"not ready"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def readyz() -> Iterator[str]:
    _Readyz.asked = 0
    server = HTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/readyz"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_helm_test_check(url: str, deadline_s: str) -> subprocess.CompletedProcess[str]:
    """The helm test pod's own command (``python -c SCRIPT URL DEADLINE``), with this interpreter."""
    (c,) = helm_test_pod(render())["spec"]["containers"]
    assert c["command"] == ["python", "-c"]
    return subprocess.run(
        [sys.executable, "-c", c["args"][0], url, deadline_s],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_helm_test_check_waits_for_readiness_and_passes(readyz: str) -> None:
    done = run_helm_test_check(readyz, "30")
    assert done.returncode == 0, done.stderr
    assert _Readyz.asked == 3 and "200 ready" in done.stdout


def test_the_helm_test_check_fails_after_its_deadline(readyz: str) -> None:
    _Readyz.not_ready = 10**6
    try:
        done = run_helm_test_check(readyz, "1")
    finally:
        _Readyz.not_ready = 2
    assert done.returncode == 1
    assert readyz in done.stderr and "503" in done.stderr


def test_a_disruption_budget_topology_spread_and_resources() -> None:
    docs = render()
    pdb = one(docs, "PodDisruptionBudget", FULLNAME)
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    spread = workload(docs)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [s["topologyKey"] for s in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(s["labelSelector"]["matchLabels"].items() <= pod_labels.items() for s in spread)
    assert container(docs)["resources"]["requests"] == {"cpu": "500m", "memory": "256Mi"}


# --- scaling -------------------------------------------------------------------------------------------


def test_keda_scales_the_workload_on_the_groups_lag_within_the_partitions() -> None:
    docs = render(KEDA_MONITORING)
    scaled = one(docs, "ScaledObject", FULLNAME)
    assert "replicas" not in workload(docs)["spec"]  # the autoscaler owns it
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= 12
    (trigger,) = scaled["spec"]["triggers"]
    settings = settings_file(docs)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == settings["kafka"]["bootstrap_servers"]
    assert trigger["metadata"]["consumerGroup"] == settings["kafka"]["group_id"]
    assert trigger["metadata"]["topic"] == settings["kafka"]["input_topic"]
    assert trigger["metadata"]["lagThreshold"] == "500"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} == {SECRET}
    # a StatefulSet in exactly-once mode, an existing TriggerAuthentication, extra metadata
    everything = render(EVERYTHING)
    (trigger,) = one(everything, "ScaledObject")["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": "kafka-sasl"}
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    eos = render(with_values(EXACTLY_ONCE, **{"autoscaling.keda.enabled": True}))
    assert one(eos, "ScaledObject")["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"


def test_an_hpa_when_keda_is_off() -> None:
    docs = render(HPA_EXACTLY_ONCE)
    hpa = one(docs, "HorizontalPodAutoscaler", FULLNAME)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": FULLNAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "replicas" not in workload(docs)["spec"]
    assert "ScaledObject" not in kinds(docs)


# --- monitoring ----------------------------------------------------------------------------------------


def test_the_pod_monitor_scrapes_the_health_port_of_the_pods() -> None:
    docs = render(KEDA_MONITORING)
    monitor = one(docs, "PodMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (
        endpoint["port"] in {p["name"] for p in container(docs)["ports"]} and endpoint["path"] == "/metrics"
    )


def test_the_service_monitor_scrapes_the_services_health_port() -> None:
    docs = render(EVERYTHING)
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    service = one(docs, "Service", FULLNAME)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["interval"] == "15s"


def test_the_prometheus_rule_is_deploys_alert_rules() -> None:
    text = (chart.ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text()
    # the placeholder scrape job becomes the ServiceMonitor's (the Service's name), the PodMonitor's
    # (namespace/name); tests/deploy/test_alert_rules.py checks the other values
    job = 'job="moderation-consumer"'
    shipped = yaml.safe_load(text.replace(job, f'job="{FULLNAME}"'))
    assert one(render(EVERYTHING), "PrometheusRule")["spec"] == shipped
    shipped = yaml.safe_load(text.replace(job, f'job="moderation/{FULLNAME}"'))
    prefixed = one(render(KEDA_MONITORING), "PrometheusRule")["spec"]
    urls = [r["annotations"]["runbook_url"] for g in prefixed["groups"] for r in g["rules"] if "alert" in r]
    assert urls and all(
        u.startswith("https://git.example.com/moderation/blob/main/docs/runbook.md#") for u in urls
    )
    assert [r["expr"] for g in prefixed["groups"] for r in g["rules"]] == [
        r["expr"] for g in shipped["groups"] for r in g["rules"]
    ]


def test_the_dashboard_configmap_is_deploys_dashboard_for_grafanas_sidecar() -> None:
    shipped = json.loads((chart.ROOT / "deploy" / "grafana" / "moderation.json").read_text())
    dashboard = one(render(KEDA_MONITORING), "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Moderation"}
    assert json.loads(dashboard["data"]["moderation.json"]) == shipped
    elsewhere = one(render(EVERYTHING), "ConfigMap", f"{FULLNAME}-dashboard")
    assert elsewhere["metadata"]["namespace"] == "monitoring"
    assert elsewhere["metadata"]["labels"]["team"] == "moderation"


# --- exposure ------------------------------------------------------------------------------------------


def test_the_ingress_routes_callbacks_and_sets_the_public_url() -> None:
    docs = render(EVERYTHING)
    ingress = one(docs, "Ingress", FULLNAME)
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert rule["host"] == "moderation.example.com"
    assert path["path"] == "/callbacks" and path["backend"]["service"] == {
        "name": FULLNAME,
        "port": {"name": "callbacks"},
    }
    assert settings_file(docs)["callbacks"]["public_url"] == "https://moderation.example.com"
    given = render(with_values(EVERYTHING, **{"settings.callbacks.public_url": "https://cb.example.com"}))
    assert settings_file(given)["callbacks"]["public_url"] == "https://cb.example.com"
    assert "public_url" not in settings_file(render())["callbacks"]


def test_the_network_policy_opens_kafka_the_registry_the_providers_dns_and_the_two_ports() -> None:
    policy = one(render(EVERYTHING), "NetworkPolicy", FULLNAME)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ingress_ports = [[p["port"] for p in rule["ports"]] for rule in policy["ingress"]]
    assert ingress_ports == [["callbacks"], ["health"]]
    assert "from" not in policy["ingress"][0]  # providers call back from anywhere (the Ingress controller)
    assert policy["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    egress = [
        (tuple((p["port"], p["protocol"]) for p in rule["ports"]), rule.get("to"))
        for rule in policy["egress"]
    ]
    dns, kafka, registry, providers, otlp = egress
    assert dns[0] == ((53, "UDP"), (53, "TCP")) and dns[1][0]["podSelector"]["matchLabels"] == {
        "k8s-app": "kube-dns"
    }
    assert kafka == (((9096, "TCP"),), [{"ipBlock": {"cidr": "10.20.0.0/16"}}])
    assert registry == (((443, "TCP"),), [{"ipBlock": {"cidr": "10.21.0.0/16"}}])
    assert providers[0] == ((443, "TCP"),) and providers[1][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in providers[1][0]["ipBlock"]["except"]  # public addresses only
    assert otlp[0] == ((4318, "TCP"),)
    # by default Kafka and the registry on their usual ports, anywhere
    default = one(render(), "NetworkPolicy", FULLNAME)["spec"]["egress"]
    assert [[p["port"] for p in rule["ports"]] for rule in default] == [
        [53, 53],
        [9092, 9093, 9094],
        [443, 8081],
        [443],
    ]
    assert "to" not in default[1] and "to" not in default[2]


# --- refused values ------------------------------------------------------------------------------------

SCHEMA_REFUSALS = {
    "misspelled setting": ({"settings": {"kafka": {"bootstrap_server": "k:9092"}}}, "bootstrap_server"),
    "mistyped setting": ({"settings": {"processing": {"max_in_flight": "many"}}}, "max_in_flight"),
    "setting outside its choices": ({"settings": {"processing": {"delivery": "exactly-once"}}}, "delivery"),
    "a key in the values": ({"settings": {"hive": {"visual_key": "k-3b1f9e0c"}}}, "visual_key"),
    "a transactional id in the values": (
        {"settings": {"kafka": {"transactional_id": "x"}}},
        "transactional_id",
    ),
    "unknown top-level value": ({"replicas": 3}, "replicas"),
    "mistyped chart value": ({"autoscaling": {"keda": {"maxReplicaCount": "6"}}}, "maxReplicaCount"),
    "misspelled switch": ({"monitoring": {"podMonitor": {"enable": True}}}, "enable"),
    "no workers": ({"workers": 0}, "workers"),
    "a selector label in commonLabels": (
        {"commonLabels": {"app.kubernetes.io/name": "other"}},
        "commonLabels",
    ),
    "a selector label in podLabels": ({"podLabels": {"app.kubernetes.io/instance": "x"}}, "podLabels"),
    "a label that is no string": ({"commonLabels": {"tier": 1}}, "commonLabels"),
    "misspelled pod security field": ({"podSecurityContext": {"runAsUsr": 1000}}, "runAsUsr"),
    "mistyped container security field": (
        {"securityContext": {"readOnlyRootFilesystem": "yes"}},
        "readOnlyRootFilesystem",
    ),
    "a seccomp profile that does not exist": (
        {"securityContext": {"seccompProfile": {"type": "Default"}}},
        "seccompProfile",
    ),
    "envFrom without a source": ({"envFrom": [{"prefix": "X_"}]}, "envFrom"),
    "an init container without an image": (
        {"extraInitContainers": [{"name": "wait"}]},
        "extraInitContainers",
    ),
    "an unknown lifecycle hook": ({"lifecycle": {"preStart": {"sleep": {"seconds": 1}}}}, "preStart"),
    "a helm test without a deadline": ({"helmTest": {"deadlineSeconds": 0}}, "deadlineSeconds"),
}
TEMPLATE_REFUSALS = {
    "keda beyond the partitions": (
        {"autoscaling": {"inputPartitions": 8, "keda": {"enabled": True, "maxReplicaCount": 9}}},
        "autoscaling.keda.maxReplicaCount (9) times workers (1) exceeds autoscaling.inputPartitions (8)",
    ),
    "hpa times workers beyond the partitions": (
        {"workers": 2, "autoscaling": {"hpa": {"enabled": True, "maxReplicas": 7}}},
        "autoscaling.hpa.maxReplicas (7) times workers (2) exceeds autoscaling.inputPartitions (12)",
    ),
    "replicas beyond the partitions": ({"replicaCount": 13}, "replicaCount (13)"),
    "exactly-once with workers": (
        with_values(EXACTLY_ONCE, workers=2),
        "workers: exactly_once takes 1 worker",
    ),
    "keda and hpa": (
        {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
        "autoscaling.keda.enabled and autoscaling.hpa.enabled",
    ),
    "two monitors": (
        {"monitoring": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True}}},
        "monitoring.podMonitor.enabled and monitoring.serviceMonitor.enabled",
    ),
    "health port 0": ({"settings": {"health": {"port": 0}}}, "settings.health.port"),
    "ingress without a host": ({"ingress": {"enabled": True}}, "ingress.host"),
}


@pytest.mark.parametrize("case", [*SCHEMA_REFUSALS, *TEMPLATE_REFUSALS])
def test_helm_refuses_bad_values_naming_them(case: str) -> None:
    values, named = {**SCHEMA_REFUSALS, **TEMPLATE_REFUSALS}[case]
    done = chart.template(values, release=RELEASE)
    assert done.returncode != 0, f"{case}: rendered\n{done.stdout[:500]}"
    assert named in done.stderr, done.stderr
    assert "k-3b1f9e0c" not in done.stderr  # never the value of a key


def test_helm_lint_refuses_a_value_the_schema_does_not_allow() -> None:
    values, named = SCHEMA_REFUSALS["misspelled setting"]
    done = chart.helm(
        "lint", str(chart.CHART), "--strict", "--kube-version", chart.KUBE_VERSION, values=values
    )
    assert done.returncode != 0
    assert named in done.stdout + done.stderr
