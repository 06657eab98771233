"""The configuration reference (docs/configuration.md) is generated from the settings models: it is
exactly what ``python -m moderation_devtools.settings_doc`` writes now, every setting has a
description, and the environment variable it names is the one the settings loader reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import Settings, load_settings
from moderation_devtools import settings_doc


def test_the_configuration_page_is_what_the_generator_writes() -> None:
    assert settings_doc.PAGE.read_text(encoding="utf-8") == settings_doc.render(), (
        "docs/configuration.md is out of step: run python -m moderation_devtools.settings_doc"
    )


def test_every_setting_and_section_has_a_description() -> None:
    assert settings_doc.undescribed() == []


def test_every_setting_is_on_the_page_once() -> None:
    page = settings_doc.render()
    names = [s.dotted for s in settings_doc.settings()]
    assert len(names) == len(set(names)) > 100
    for name in names:
        assert page.count(f'<a id="{name}"></a>') == 1, name


def test_the_page_names_the_variables_the_loader_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    documented = {s.dotted: s.env for s in settings_doc.settings()}
    assert documented["processing.max_in_flight"] == "`MODERATION_PROCESSING__MAX_IN_FLIGHT`"
    assert documented["policy_reload_interval_s"] == "`MODERATION_POLICY_RELOAD_INTERVAL_S`"
    assert documented["media.allow_networks"] == "`MODERATION_MEDIA__ALLOW_NETWORKS` (JSON)"
    monkeypatch.setenv("MODERATION_PROCESSING__MAX_IN_FLIGHT", "7")
    monkeypatch.setenv("MODERATION_POLICY_RELOAD_INTERVAL_S", "9")
    monkeypatch.setenv("MODERATION_MEDIA__ALLOW_NETWORKS", '["10.0.0.0/8"]')
    settings = load_settings()
    assert settings.processing.max_in_flight == 7
    assert settings.policy_reload_interval_s == 9
    assert settings.media.allow_networks == ["10.0.0.0/8"]


def test_defaults_types_and_bounds_are_read_from_the_models() -> None:
    rows = {s.dotted: s for s in settings_doc.settings()}
    in_flight = rows["processing.max_in_flight"]
    assert in_flight.default_text() == f"`{Settings().processing.max_in_flight}`"
    assert in_flight.type_text() == "integer (≥ 1, ≤ 100,000)"
    assert rows["processing.max_record_bytes"].default_text() == "`1048576` (1 MiB)"
    assert rows["hive.csam_key"].type_text() == "secret"
    assert rows["hive.csam_key"].default_text() == "unset"
    assert rows["processing.ordering"].type_text() == "one of `KEY`, `PARTITION`, `UNORDERED`"
    assert rows["processing.async_media"].type_text() == "list of `IMAGE`, `GIF` or `VIDEO`"


def test_check_mode_reports_drift_and_changes_nothing(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# stale\n", encoding="utf-8")
    assert settings_doc.main(["--check", "--output", str(page)]) == 1
    assert page.read_text(encoding="utf-8") == "# stale\n"
    assert settings_doc.main(["--output", str(page)]) == 0
    assert settings_doc.main(["--check", "--output", str(page)]) == 0
