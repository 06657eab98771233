"""Policy files, as the service loads them at start and on every hot reload (whoever can write the
policy file or its ConfigMap writes these bytes): YAML, merged per tenant, validated and checked
against the registered checks; then what the service reads of the result. Documented error:
``ConfigError``."""

from __future__ import annotations

from consumer.checks.builtin import default_registry
from consumer.errors import ConfigError
from consumer.policy.tenants import PolicyStore, load_policies
from tests.fuzz.targets._scratch import scratch_file

__all__ = ["test_one_input"]

_PATH = scratch_file("policy.yaml")
_REGISTRY = default_registry()


def test_one_input(data: bytes) -> None:
    _PATH.write_bytes(data)
    try:
        policies = load_policies(_PATH, _REGISTRY)
    except ConfigError:
        return
    policies.for_tenant("acme")
    for tenant in list(policies.tenants)[:3]:
        policies.for_tenant(tenant)
    assert policies.version is not None and policies.digest
    PolicyStore.of(policies).evidence_floor  # noqa: B018  (the service reads it on every reload)
