from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from consumer import config
from consumer.cli.main import main
from consumer.config import Settings, load_settings, validation_message
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


# --- hostile settings: one line, exit 2, never a value or a line of a file ---------------------

SECRET = "hunter2-s3cr3t-value"
KEYS = {
    f"MODERATION_HIVE__{check}_KEY": f"{check.lower()}-key" for check in ("CSAM", "VISUAL", "TEXT", "INDEX")
}


def run_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *(args or ("run",))],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert SECRET not in proc.stderr and SECRET not in proc.stdout
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_run_with_a_yaml_error_on_a_secret_line_names_only_where(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"kafka:\n  group_id: g\nhive:\n  csam_key: {SECRET}: oops\n")
    line = assert_one_line_exit_2(run_cli(tmp_path, {}, "run", "--config", str(path)), "is not valid YAML")
    assert "line 4, column" in line


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        (
            "MODERATION_KAFKA__CLIENT_CONFIG",
            f'{{"sasl.password": "{SECRET}"',
            "kafka.client_config (MODERATION_KAFKA__CLIENT_CONFIG): not valid JSON",
        ),
        (
            "MODERATION_PROCESSING__CHECKS",
            f"csam,{SECRET}",
            "processing.checks (MODERATION_PROCESSING__CHECKS): not valid JSON",
        ),
    ],
)
def test_run_with_a_non_json_complex_variable(tmp_path: Path, env: str, value: str, expected: str) -> None:
    assert_one_line_exit_2(run_cli(tmp_path, {env: value}), expected)


def test_run_with_a_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"hive:\n  csam_key: " + SECRET.encode() + b"\xff\xfe\n")
    assert_one_line_exit_2(
        run_cli(tmp_path, {"MODERATION_CONFIG": str(path)}), "config file", "not UTF-8 text"
    )


def test_run_with_a_policy_file_yaml_error_holding_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: x\nclassification: {{visual: {{token: '{SECRET}\n")
    env = {**KEYS, "MODERATION_POLICY_FILE": str(path)}
    assert_one_line_exit_2(run_cli(tmp_path, env), "policy_file", "is not valid YAML")


def test_dlq_replay_settings_errors_take_the_same_path(tmp_path: Path) -> None:
    env = {"MODERATION_KAFKA__CLIENT_CONFIG": SECRET}
    assert_one_line_exit_2(run_cli(tmp_path, env, "dlq", "replay", "--dry-run"), "kafka.client_config")


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (f"kafka:\n  client_config: {SECRET}\n", r"kafka\.client_config \(MODERATION_KAFKA__CLIENT_CONFIG\)"),
        (f"hive:\n  csam_key: [{SECRET}]\n", r"hive\.csam_key \(MODERATION_HIVE__CSAM_KEY\)"),
        (f"callbacks:\n  token: {{a: {SECRET}}}\n", r"callbacks\.token \(MODERATION_CALLBACKS__TOKEN\)"),
        (f"kafka:\n  topic_partitions: {SECRET}\n", r"kafka\.topic_partitions .*valid integer"),
        (f"processing:\n  checks: [{SECRET}]\n", r"processing\.checks\.0 .*should match pattern"),
        (f"processing:\n  similarity: {SECRET}\n", r"processing\.similarity .*expected 'hive'"),
        (f"hive:\n  base_url: {SECRET}\n", r"hive\.base_url .*expected an http"),
        (f"hive: {SECRET}\n", r"hive \(MODERATION_HIVE\): Input should be a valid dictionary"),
        (f"kafka:\n  bootstrap_servers: {SECRET}\n", r"expected host:port"),
        (f"a: !{SECRET} x\n", r"could not determine a constructor for the tag '…' at line 1"),
        (f"a: *{SECRET}\n", r"is refused: YAML anchors and aliases \(&, \*\) are not accepted at line 1"),
        (f"a: &{SECRET} x\n", r"is refused: YAML anchors and aliases \(&, \*\) are not accepted at line 1"),
        (f"a: '{SECRET}\x00'\n", r"unacceptable character #x0000 at line 1"),
        ("a: 2020-13-45\n", r"a value cannot be converted"),
        ("[" * 1500, r"is refused: nested deeper than 32 levels at line 1"),
    ],
)
def test_settings_errors_never_show_the_value(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(path)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "missing.key", "No such file or directory"),
        (lambda p: p, "not a regular file"),
        (lambda p: _write(p / "bin.key", SECRET.encode() + b"\xff"), "not UTF-8 text"),
        (lambda p: _write(p / "huge.key", b"k" * ((64 << 10) + 1)), "over the 65536-byte limit"),
    ],
)
def test_unreadable_key_file_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], Path], expected: str
) -> None:
    monkeypatch.setenv("MODERATION_HIVE__CSAM_KEY_FILE", str(make(tmp_path)))
    with pytest.raises(
        ConfigError, match=r"hive\.csam_key_file \(MODERATION_HIVE__CSAM_KEY_FILE\)"
    ) as caught:
        load_settings()
    assert expected in str(caught.value) and SECRET not in str(caught.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*: not a regular file"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("MODERATION_LIMITS__RATE_PER_S", SECRET, r"limits\.rate_per_s \(MODERATION_LIMITS__RATE_PER_S\)"),
        ("MODERATION_PROCESSING__ASYNC_MEDIA", SECRET, r"processing\.async_media \("),
        ("MODERATION_KAFKA", SECRET, r"kafka \(MODERATION_KAFKA\): not valid JSON"),
        ("MODERATION_KAFKA__CLIENT_CONFIG", "[" * 100_000, r"not valid JSON \(nested too deeply\)"),
    ],
)
def test_non_json_variables_are_named(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings()
    assert SECRET not in str(caught.value)


def test_main_turns_an_escaped_settings_error_into_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def escaped(*_: object, **__: object) -> Settings:
        return Settings.model_validate({"kafka": {"topic_partitions": SECRET}})  # its str() holds the value

    monkeypatch.setattr(config, "load_settings", escaped)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and SECRET not in err
    assert err.startswith(
        "error: invalid setting kafka.topic_partitions (MODERATION_KAFKA__TOPIC_PARTITIONS)"
    )


def test_main_turns_an_escaped_pydantic_settings_error_into_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODERATION_PROCESSING__CHECKS", SECRET)
    monkeypatch.setattr(config, "load_settings", lambda *_: Settings())
    assert main(["dlq", "replay"]) == 2
    err = capsys.readouterr().err
    assert err == "error: invalid setting processing.checks (MODERATION_PROCESSING__CHECKS): not valid JSON\n"


class _Echoing(BaseModel):
    value: str = ""
    values: list[str] = []

    @field_validator("value")
    @classmethod
    def _whole(cls, v: str) -> str:
        raise ValueError(f"bad value {v!r}")

    @field_validator("values")
    @classmethod
    def _truncated(cls, v: list[str]) -> list[str]:
        raise ValueError(f"bad item {v[0][:20]!r}")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"value": SECRET}, "bad value '…'"),
        ({"values": [SECRET * 2]}, "invalid value (value_error)"),
    ],
)
def test_validation_messages_never_repeat_a_validator_quoted_value(
    data: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _Echoing.model_validate(data)
    assert validation_message(caught.value.errors()[0]) == expected


def test_a_settings_file_whose_top_level_keys_are_not_names(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("? null\n: null\n1: {}\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping of sections \(by name\)"):
        load_settings(path)
