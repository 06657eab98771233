"""The Helm chart's files agree with the repository (no helm needed): its appVersion is the package's
version, its copies of the alert rules and the dashboard are deploy/'s, its values schema's
``settings`` is what the service's settings models generate, its defaults are the service's, and
its default values pass its own schema and the service's settings loader."""

from __future__ import annotations

import json
import re

import jsonschema
import yaml

import consumer
from consumer.config import load_settings
from consumer.settings_sections import CallbackSettings, HealthSettings, ProcessingSettings
from moderation_devtools import chart

HELPERS = chart.CHART / "templates" / "_helpers.tpl"


def values() -> dict[str, object]:
    data = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_app_version_is_the_package_version() -> None:
    meta = yaml.safe_load(chart.CHART_YAML.read_text())
    assert meta["appVersion"] == consumer.__version__, "run python -m moderation_devtools.chart"


def test_the_chart_copies_of_the_alert_rules_and_the_dashboard_are_deploys() -> None:
    for source, copy in chart.COPIES.items():
        assert copy.exists(), f"{copy} is missing: run python -m moderation_devtools.chart"
        assert copy.read_bytes() == source.read_bytes(), (
            f"{copy} differs from {source}: run python -m moderation_devtools.chart"
        )


def test_nothing_in_the_chart_is_out_of_step() -> None:
    assert chart.sync(check=True) == [], "run python -m moderation_devtools.chart"


def test_the_values_schema_refuses_what_the_chart_owns_and_knows_every_other_setting() -> None:
    schema = json.loads(chart.SCHEMA.read_text())
    settings = schema["properties"]["settings"]
    defs = settings["$defs"]
    hive = defs["HiveSettings"]["properties"]
    assert "visual_key" not in hive and "visual_key_file" not in hive and "base_url" in hive
    assert "transactional_id" not in defs["KafkaSettings"]["properties"]
    assert "policy_file" not in settings["properties"]
    assert settings["additionalProperties"] is False
    assert all(
        d.get("additionalProperties") is False for name, d in defs.items() if name.endswith("Settings")
    )
    validator = jsonschema.Draft202012Validator(schema)
    for bad in (
        {"settings": {"hive": {"visual_key": "k"}}},
        {"settings": {"kafka": {"bootstrap_server": "k:9092"}}},
        {"settings": {"processing": {"max_in_flight": "many"}}},
        {"replicas": 3},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_default_values_pass_the_schema_and_the_service_loads_their_settings() -> None:
    data = values()
    jsonschema.Draft202012Validator(json.loads(chart.SCHEMA.read_text())).validate(data)
    settings = load_settings(**data["settings"])  # type: ignore[arg-type]
    assert settings.health.port == HealthSettings().port


def test_the_templates_fall_back_on_the_services_defaults() -> None:
    text = HELPERS.read_text()

    def fallback(section: str, field: str) -> str:
        found = re.search(rf'dig "{section}" "{field}" (\S+) \.Values\.settings', text)
        assert found, f"{section}.{field} is not read in {HELPERS.name}"
        return found.group(1)

    assert int(fallback("health", "port")) == HealthSettings().port
    assert int(fallback("callbacks", "port")) == CallbackSettings().port
    assert float(fallback("processing", "drain_timeout_s")) == ProcessingSettings().drain_timeout_s
    assert fallback("processing", "delivery").strip('"') == ProcessingSettings().delivery


def test_every_secret_file_setting_has_a_secret_key_in_the_chart() -> None:
    """Each ``*_file`` the chart owns is set from a key of ``secrets.keys`` (and no other key)."""
    table = dict(re.findall(r"^(\w+): (MODERATION_\w+_FILE)$", HELPERS.read_text(), re.M))
    owned = {
        f"MODERATION_{section.upper()}__{name.upper()}"
        for section, names in chart.chart_owned_settings().items()
        for name in names
        if section and name.endswith("_file")
    }
    assert set(table.values()) == owned
    keys = values()["secrets"]["keys"]  # type: ignore[index]
    assert set(table) | {"kafka_client_config"} == set(keys)
