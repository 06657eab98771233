"""The policy file: a default policy, and per-tenant overrides that inherit from it.

.. code-block:: yaml

    version: 2026.12-1
    classification: {visual: {general_nsfw: {review: 0.5, block: 0.9}}}
    similarity: {review: 0.85, block: 0.9}
    fail_open: []
    tenants:
      acme:                              # the default, with these changes
        classification:
          visual:
            general_nsfw: {block: 0.8}   # review stays 0.5
            yes_drugs: null              # not thresholded for acme
        checks: [csam, visual]           # no similarity search for acme

An override is merged into the default key by key (mappings merge, anything else replaces, null
removes a class) and the result is validated like the default, so a tenant's policy is always a
whole policy. Every policy of the file is checked against the registered checks (``PolicyChecks``):
``python -m consumer policy check``, the service at start and on every reload run the same checks.

The file is bounded before anything is merged or validated: the YAML loader refuses anchors and
aliases and bounds values and depth (``consumer.config``); then at most ``MAX_TENANTS`` tenants,
``MAX_ENTRIES`` entries in any mapping or list, ``MAX_DEPTH`` levels, and ``MAX_POLICY_VALUES``
values over every effective policy (each tenant's is the default's size plus its override's), so
what is built from a file is bounded whatever it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from consumer.config import location, read_yaml_file, validation_message
from consumer.core.validation import MAX_TENANT_LENGTH, TENANT_ID
from consumer.errors import ConfigError
from consumer.policy.decision import Policy
from consumer.policy.evidence import RECORDED_FLOOR

__all__ = [
    "DEFAULT_POLICY",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_POLICY_VALUES",
    "MAX_TENANTS",
    "PolicyChecks",
    "PolicySet",
    "PolicyStore",
    "load_policies",
    "parse_policies",
]

DEFAULT_POLICY = Path(str(resources.files("consumer.policy") / "default_policy.yaml"))  # package data
MAX_TENANTS = 5_000  # tenants with an override in one file
MAX_ENTRIES = 256  # keys of any mapping, items of any list (a check's classes, a tenant's override)
MAX_DEPTH = 6  # levels under the file's top (classification.visual.general_nsfw.block is 4)
MAX_POLICY_VALUES = 500_000  # values of every effective policy together (about 45 MB validated)


class PolicyChecks(Protocol):
    """What a policy is checked against: the registered checks (``CheckRegistry``). ``where`` is
    the policy's place in the file (``""``, or ``tenants.<id>.``) for the error's setting name."""

    def check_policy(self, policy: Policy, where: str) -> None: ...


@dataclass(frozen=True)
class PolicySet:
    """The default policy and each overriding tenant's effective policy; immutable, so the service
    swaps a whole set at once and a record decides by one set from start to verdict."""

    default: Policy
    tenants: Mapping[str, Policy] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: Policy) -> PolicySet:
        return cls(policy)

    def for_tenant(self, tenant_id: str) -> Policy:
        return self.tenants.get(tenant_id, self.default)

    @property
    def version(self) -> str:
        return self.default.version

    @cached_property
    def digest(self) -> str:
        """sha256 (hex) of every effective policy of the file: changes when any tenant's does."""
        parts = [self.default.digest, *(f"{t}={p.digest}" for t, p in sorted(self.tenants.items()))]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @cached_property
    def lowest_threshold(self) -> float:
        """The lowest score any rule of any of its policies reads."""
        return min(p.lowest_threshold for p in (self.default, *self.tenants.values()))


def load_policies(
    path: Path | None = None, checks: PolicyChecks | None = None, *, setting: str = "policy_file"
) -> PolicySet:
    """The policies in the file at ``path`` (default: the shipped one); ConfigError naming the
    first bad setting (``policy tenants.acme.classification.visual``), never quoting the file."""
    raw = read_yaml_file(path or DEFAULT_POLICY, setting)
    return parse_policies(raw, checks)


def parse_policies(raw: Any, checks: PolicyChecks | None = None) -> PolicySet:
    """The policies of a parsed policy file; with ``checks``, each checked against them."""
    if not isinstance(raw, dict):
        raise ConfigError("policy", "the file must hold a mapping (version, classification, ...)")
    base = {k: v for k, v in raw.items() if k != "tenants"}
    overrides = raw.get("tenants") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("policy tenants", "expected a mapping of tenant id to its override")
    if len(overrides) > MAX_TENANTS:
        raise ConfigError("policy tenants", f"{len(overrides)} tenants, over the limit of {MAX_TENANTS}")
    base_values = _values(base, "")
    total = base_values * (1 + len(overrides))  # each tenant's policy: the default, merged
    for tenant, override in overrides.items():
        total += _values(override, f"tenants.{location((str(tenant),))}.", 1)
    if total > MAX_POLICY_VALUES:
        raise ConfigError(
            "policy",
            f"{total} values over its {1 + len(overrides)} effective policies (the default's"
            f" {base_values} in each), over the limit of {MAX_POLICY_VALUES}",
        )
    default = _validated(base, "")
    tenants: dict[str, Policy] = {}
    for tenant, override in overrides.items():
        if not isinstance(tenant, str) or TENANT_ID.fullmatch(tenant) is None:
            shown = ascii(tenant)[:40] if isinstance(tenant, str) else type(tenant).__name__
            raise ConfigError(
                "policy tenants",
                f"tenant id {shown} is outside the tenant-id grammar (1-{MAX_TENANT_LENGTH} of"
                " A-Z a-z 0-9 . _ -, first a letter or digit): no upload could ever carry it",
            )
        where = f"tenants.{location((tenant,))}."
        if override is None:
            override = {}
        if not isinstance(override, dict):
            raise ConfigError(f"policy {where}".rstrip("."), "expected a mapping of the settings it changes")
        if "tenants" in override:
            raise ConfigError(f"policy {where}tenants", "overrides do not nest")
        tenants[tenant] = _validated(_merged(base, override), where)
    if checks is not None:
        checks.check_policy(default, "")
        for tenant, policy in tenants.items():
            checks.check_policy(policy, f"tenants.{location((tenant,))}.")
    return PolicySet(default, tenants)


def _values(value: Any, where: str, depth: int = 0) -> int:
    """How many values ``value`` holds (itself, keys and items included); ConfigError naming
    ``where`` for a mapping or list of more than ``MAX_ENTRIES`` or nested over ``MAX_DEPTH``."""
    if not isinstance(value, dict | list):
        return 1
    setting = f"policy {where}".rstrip(" .") or "policy"
    if depth >= MAX_DEPTH:
        raise ConfigError(setting, f"nested deeper than {MAX_DEPTH} levels")
    if len(value) > MAX_ENTRIES:
        raise ConfigError(
            setting, f"a mapping or list of {len(value)} entries, over the limit of {MAX_ENTRIES}"
        )
    items = value.values() if isinstance(value, dict) else value
    return 1 + len(value) * isinstance(value, dict) + sum(_values(item, where, depth + 1) for item in items)


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        inherited = merged.get(key)
        if isinstance(value, dict) and isinstance(inherited, dict):
            merged[key] = _merged(inherited, value)
        else:
            merged[key] = value
    return merged


def _validated(raw: dict[str, Any], where: str) -> Policy:
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        setting = f"policy {where}{location(tuple(err['loc']))}".rstrip(" .")
        raise ConfigError(setting, validation_message(err)) from None


@dataclass
class PolicyStore:
    """The live policies the service decides by and, optionally, the shadow ones it compares them
    with. Reloading replaces a whole ``PolicySet``; readers take one set per record."""

    live: PolicySet
    shadow: PolicySet | None = None

    @classmethod
    def of(cls, policy: Policy | PolicySet | PolicyStore) -> PolicyStore:
        if isinstance(policy, PolicyStore):
            return policy
        return cls(policy if isinstance(policy, PolicySet) else PolicySet.of(policy))

    @property
    def evidence_floor(self) -> float:
        """Scores below this are not recorded: never above a threshold either policy reads."""
        lowest = self.live.lowest_threshold
        if self.shadow is not None:
            lowest = min(lowest, self.shadow.lowest_threshold)
        return min(RECORDED_FLOOR, lowest)
