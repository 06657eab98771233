from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consumer.config import load_settings
from consumer.errors import ConfigError


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        (
            "MODERATION_KAFKA__BOOTSTRAP_SERVERS",
            "no-port",
            r"kafka\.bootstrap_servers \(MODERATION_KAFKA__BOOTSTRAP_SERVERS\): expected host:port",
        ),
        (
            "MODERATION_PROCESSING__MAX_IN_FLIGHT",
            "0",
            r"processing\.max_in_flight .*greater than or equal to 1",
        ),
        (
            "MODERATION_PROCESSING__SIMILARITY",
            "bing",
            r"processing\.similarity .*expected 'hive', 'huawei' or 'none'",
        ),
        ("MODERATION_HIVE__BASE_URL", "ftp://x", r"hive\.base_url .*expected an http:// or https:// URL"),
        ("MODERATION_LOG_LEVEL", "LOUD", r"log_level .*expected 'DEBUG'"),
    ],
)
def test_bad_environment_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_yaml_file_with_unknown_setting(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  bootstrap_server: 127.0.0.1:9092\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_server .*unknown setting"):
        load_settings(path)


def test_yaml_file_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_settings(path)


def test_environment_wins_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  group_id: from-yaml\n  input_topic: in-yaml\n")
    monkeypatch.setenv("MODERATION_KAFKA__GROUP_ID", "from-env")
    s = load_settings(path)
    assert (s.kafka.group_id, s.kafka.input_topic) == ("from-env", "in-yaml")


def test_keys_from_files_are_secret(tmp_path: Path) -> None:
    key_file = tmp_path / "csam.key"
    key_file.write_text("s3cr3t-key\n")
    s = load_settings(hive={"csam_key_file": str(key_file)})
    assert s.hive.key("csam").get_secret_value() == "s3cr3t-key"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.model_dump())


def test_missing_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"hive\.visual_key: required \(set MODERATION_HIVE__VISUAL_KEY"):
        load_settings().hive.key("visual")


def test_run_with_a_bad_setting_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MODERATION_KAFKA__COMMIT_INTERVAL_MS": "soon"}
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "error: invalid setting kafka.commit_interval_ms (MODERATION_KAFKA__COMMIT_INTERVAL_MS)"
    )


def test_run_without_keys_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MODERATION_KAFKA__CREATE_TOPICS": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: invalid setting hive.csam_key: required (set MODERATION_HIVE__CSAM_KEY or hive.csam_key_file)"
    ]
