"""Documents that expand (issue 22): a settings or policy file is bounded before anything is built
from it. Anchors and aliases are refused (1 MB of aliases once grew to 3 GB while merged and
validated), values and depth are bounded as the YAML is composed, and a policy's tenants, entries,
depth and the values of all its effective policies are bounded before merging and validation.
Each refusal is one line naming the file (and the line) or the setting."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer import config
from consumer.checks.builtin import default_registry
from consumer.config import MAX_CONFIG_FILE_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES, load_settings
from consumer.errors import ConfigError
from consumer.policy.tenants import (
    DEFAULT_POLICY,
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_POLICY_VALUES,
    MAX_TENANTS,
    load_policies,
    parse_policies,
)

REGISTRY = default_registry()
DEFAULT_TEXT = DEFAULT_POLICY.read_text()
PEAK_MB = 50


@pytest.fixture
def peak_mb() -> Iterator[Callable[[], float]]:
    """The peak of memory traced (MB) since the test started."""
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def refused(path: Path, *expected: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load_policies(path, REGISTRY)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("invalid setting policy"), message
    for part in expected:
        assert part in message, message
    return message


def test_a_policy_of_aliases_is_refused_at_its_first_anchor_in_bounded_memory(
    tmp_path: Path, peak_mb: Callable[[], float]
) -> None:
    """The attack of the issue: about 71,000 tenants sharing one override through an alias, just
    under the 1 MiB file bound."""
    lines = [
        DEFAULT_TEXT,
        "tenants:\n",
        "  t0: &o {classification: {visual: {general_nsfw: {block: 0.8}}}}\n",
    ]
    lines += [f"  t{i}: *o\n" for i in range(1, 71_000)]
    path = tmp_path / "policy.yaml"
    path.write_text("".join(lines))
    assert 900_000 < path.stat().st_size <= MAX_CONFIG_FILE_BYTES
    anchor_line = DEFAULT_TEXT.count("\n") + 2
    message = refused(path, str(path), "is refused", "anchors and aliases", f"at line {anchor_line},")
    assert message.startswith("invalid setting policy_file: ")
    assert peak_mb() < PEAK_MB


def test_a_billion_laughs_document_is_refused(tmp_path: Path, peak_mb: Callable[[], float]) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join(f'*{prev}' for _ in range(9))}]\n")
    path = tmp_path / "laughs.yaml"
    path.write_text("".join(lines))
    refused(path, "anchors and aliases", "at line 1,")
    with pytest.raises(ConfigError, match="is refused: YAML anchors and aliases"):
        load_settings(path)  # the settings file takes the same loader
    assert peak_mb() < PEAK_MB


def test_a_merge_key_needs_an_alias_so_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_TEXT + "tenants:\n  a: {fail_open: []}\n  b:\n    <<: {fail_open: []}\n")
    load_policies(path, REGISTRY)  # an inline merge repeats nothing: accepted
    path.write_text(DEFAULT_TEXT + "tenants:\n  a: &a {fail_open: []}\n  b:\n    <<: *a\n")
    refused(path, "anchors and aliases")


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_without_recursing(
    tmp_path: Path, depth: int, peak_mb: Callable[[], float]
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("version: x\nclassification: " + "[" * depth + "]" * depth + "\n")
    refused(path, f"nested deeper than {MAX_YAML_DEPTH} levels", "at line 2,")
    assert peak_mb() < PEAK_MB


def test_a_document_of_too_many_values_is_refused(
    tmp_path: Path, peak_mb: Callable[[], float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a thousandth of the bound (the pure-Python loader composes some 5,000 values a second on
    a busy core): the values composed before the bound, no more."""
    assert MAX_YAML_VALUES * 10 < MAX_CONFIG_FILE_BYTES  # a file of the largest size can hold more
    monkeypatch.setattr(config, "MAX_YAML_VALUES", 100)
    path = tmp_path / "wide.yaml"
    path.write_text("version: x\nfail_open: [" + "1," * 200_000 + "1]\n")
    assert path.stat().st_size <= MAX_CONFIG_FILE_BYTES
    refused(path, "more than 100 values", "at line 2,")
    assert peak_mb() < 10


def test_too_many_tenants_are_refused_before_any_is_validated(
    tmp_path: Path, peak_mb: Callable[[], float]
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(DEFAULT_TEXT + "tenants:\n" + "".join(f"  t{i}: {{}}\n" for i in range(MAX_TENANTS + 1)))
    refused(path, "policy tenants:", f"{MAX_TENANTS + 1} tenants, over the limit of {MAX_TENANTS}")
    assert peak_mb() < PEAK_MB


def base(**changes: Any) -> dict[str, Any]:
    return {"version": "v1", "classification": {"visual": {"general_nsfw": {"review": 0.5}}}, **changes}


def test_an_override_too_wide_or_too_deep_is_refused_naming_its_tenant() -> None:
    wide = {"classification": {"visual": {f"c{i}": {"review": 0.5} for i in range(MAX_ENTRIES + 1)}}}
    with pytest.raises(
        ConfigError, match=f"policy tenants.acme: .*{MAX_ENTRIES + 1} entries, over the limit"
    ):
        parse_policies({**base(), "tenants": {"acme": wide}}, REGISTRY)
    deep: Any = {"x": 1}
    for _ in range(MAX_DEPTH):
        deep = {"x": deep}
    with pytest.raises(ConfigError, match=f"policy tenants.acme: nested deeper than {MAX_DEPTH} levels"):
        parse_policies({**base(), "tenants": {"acme": {"classification": deep}}}, REGISTRY)
    with pytest.raises(ConfigError, match=f"policy: nested deeper than {MAX_DEPTH} levels"):
        parse_policies(base(classification=deep))


def test_a_large_default_times_many_tenants_is_refused_before_merging() -> None:
    """Each tenant's policy is the default merged with its override: a default of 250 classes for
    two checks and 2,000 one-line tenants would be over a million values once merged."""
    classes = {f"c{i}": {"review": 0.5, "block": 0.9} for i in range(250)}
    big = base(classification={"visual": classes, "text": dict(classes)})
    tenants: dict[str, Any] = {f"t{i}": {} for i in range(2_000)}
    with pytest.raises(ConfigError, match=f"policy: .* over the limit of {MAX_POLICY_VALUES}"):
        parse_policies({**big, "tenants": tenants})


def test_a_policy_within_the_bounds_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    tenants = "".join(
        f"  t{i}: {{classification: {{visual: {{general_nsfw: {{block: 0.8}}}}}}}}\n" for i in range(200)
    )
    path.write_text(DEFAULT_TEXT + "tenants:\n" + tenants)
    found = load_policies(path, REGISTRY)
    assert len(found.tenants) == 200
    assert found.for_tenant("t7").classification["visual"]["general_nsfw"].block == 0.8
