"""``consumer.policy.reload``: a changed policy file replaces the policies in force at once; a bad
one is refused, reported (a log line naming the setting, the refused counter) and the old policies
stay; an unchanged one is counted as such; the shadow file reloads on its own."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.checks.builtin import default_registry
from consumer.config import Settings, load_settings
from consumer.policy.reload import PolicyReloader
from consumer.policy.tenants import PolicyStore, load_policies
from consumer.telemetry import metrics
from moderation_devtools.stack import wait_until_async

REGISTRY = default_registry()
POLICY: dict[str, Any] = {
    "version": "v1",
    "classification": {"visual": {"general_nsfw": {"review": 0.5, "block": 0.9}}},
    "similarity": {"review": 0.85, "block": 0.9},
}


def write(path: Path, version: str, **changes: Any) -> Path:
    path.write_text(yaml.safe_dump({**POLICY, "version": version, **changes}))
    return path


def reloads(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("moderation_policy_reloads_total", {"outcome": outcome}) or 0.0


async def until(condition: Callable[[], bool]) -> bool:
    """True once ``condition`` holds, False after 10 s (the shared wait, polling every 10 ms)."""
    return await wait_until_async(condition, 10.0, poll_s=0.01)


@pytest.fixture
async def reloading() -> AsyncIterator[Callable[..., Any]]:
    """reloading(settings) -> (store, reloader), started; stopped at the end of the test."""
    started: list[PolicyReloader] = []

    def start(settings: Settings) -> tuple[PolicyStore, PolicyReloader]:
        live = load_policies(settings.policy_file, REGISTRY)
        shadow = load_policies(settings.shadow_policy_file, REGISTRY) if settings.shadow_policy_file else None
        store = PolicyStore(live, shadow)
        reloader = PolicyReloader(settings, store, REGISTRY)
        started.append(reloader)
        return store, reloader

    yield start
    for reloader in started:
        await reloader.stop()


async def test_a_changed_file_replaces_the_live_policies(
    tmp_path: Path, reloading: Callable[..., Any]
) -> None:
    path = write(tmp_path / "policy.yaml", "v1")
    store, reloader = reloading(load_settings(policy_file=path, policy_reload_interval_s=0.05))
    await reloader.start()
    before = store.live
    applied = reloads("applied")
    write(path, "v2", similarity={"review": 0.8, "block": 0.95})
    assert await until(lambda: store.live.version == "v2")
    assert store.live.default.similarity != before.default.similarity
    assert reloads("applied") == applied + 1


async def test_a_bad_file_is_refused_reported_and_the_old_policy_stays(
    tmp_path: Path, reloading: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "policy.yaml", "v1")
    store, reloader = reloading(load_settings(policy_file=path, policy_reload_interval_s=0))
    await reloader.start()
    before, refused = store.live, reloads("refused")
    for bad in (
        "version: v2\nclassification: [not, a, mapping",  # not YAML
        yaml.safe_dump({**POLICY, "version": "v2", "similarity": {"review": 0.95, "block": 0.9}}),
        yaml.safe_dump({**POLICY, "version": "v2", "classification": {"no_such_check": {}}}),
        "- a list\n",
    ):
        path.write_text(bad)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="consumer.policy"):
            reloader.request()  # SIGHUP
            assert await until(lambda expected=refused + 1: reloads("refused") == expected), bad
        refused += 1
        assert store.live is before
        (line,) = [r.getMessage() for r in caplog.records if r.name == "consumer.policy"]
        assert "live policy reload refused (SIGHUP): invalid setting policy" in line  # names the setting
        assert "version v1 stays" in line
        assert "not, a, mapping" not in line  # the file is never quoted
    path.unlink()  # a file that went away: refused the same way
    reloader.request()
    assert await until(lambda: reloads("refused") == refused + 1)
    assert store.live is before
    write(path, "v3")  # and a good file later is applied
    reloader.request()
    assert await until(lambda: store.live.version == "v3")


async def test_the_same_rules_are_counted_unchanged_and_not_swapped(
    tmp_path: Path, reloading: Callable[..., Any]
) -> None:
    path = write(tmp_path / "policy.yaml", "v1")
    store, reloader = reloading(load_settings(policy_file=path, policy_reload_interval_s=0))
    await reloader.start()
    before, unchanged = store.live, reloads("unchanged")
    reloader.request()
    assert await until(lambda: reloads("unchanged") == unchanged + 1)
    assert store.live is before


async def test_the_shadow_file_reloads_apart_from_the_live_one(
    tmp_path: Path, reloading: Callable[..., Any]
) -> None:
    live_path, shadow_path = (
        write(tmp_path / "live.yaml", "live-1"),
        write(tmp_path / "shadow.yaml", "shadow-1"),
    )
    settings = load_settings(
        policy_file=live_path, shadow_policy_file=shadow_path, policy_reload_interval_s=0.05
    )
    store, reloader = reloading(settings)
    await reloader.start()
    live = store.live
    write(shadow_path, "shadow-2", similarity={"review": 0.7, "block": 0.8})
    assert await until(lambda: store.shadow is not None and store.shadow.version == "shadow-2")
    assert store.live is live
    shadow = store.shadow
    shadow_path.write_text("version: [")
    refused = reloads("refused")
    reloader.request()
    assert await until(lambda: reloads("refused") >= refused + 1)
    assert store.shadow is shadow and store.live is live


async def test_a_configmap_symlink_swap_is_seen(tmp_path: Path, reloading: Callable[..., Any]) -> None:
    """Kubernetes swaps the ``..data`` symlink: the path then names another file, maybe with the
    same size and modification time."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    second.mkdir()
    write(first / "policy.yaml", "v1")
    write(second / "policy.yaml", "v2")
    (tmp_path / "..data").symlink_to(first.name)
    path = tmp_path / "policy.yaml"
    path.symlink_to("..data/policy.yaml")
    store, reloader = reloading(load_settings(policy_file=path, policy_reload_interval_s=0.05))
    await reloader.start()
    assert store.live.version == "v1"
    staged = tmp_path / "..data_tmp"
    staged.symlink_to(second.name)
    staged.replace(tmp_path / "..data")
    assert await until(lambda: store.live.version == "v2")
