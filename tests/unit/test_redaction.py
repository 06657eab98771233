"""Credentials never leave through provider messages: configured secrets, echoed headers, the cap."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from consumer.checks.redaction import MASK, Redactor, redactor_for
from consumer.config import load_settings

KEY = "sim-visual-key"


@pytest.mark.parametrize(
    "text",
    [
        "Invalid header: Authorization: token sim-visual-key",
        "authorization:Token sim-visual-key, retry later",
        '{"authorization": "token sim-visual-key"}',
        "AUTHORIZATION = Bearer sim-visual-key",
        "token sim-visual-key was refused",
        "Token 'sim-visual-key'",
        "bearer sim-visual-key",
    ],
)
def test_echoed_authorization_values_are_removed(text: str) -> None:
    out = Redactor().redact(text)  # no configured secret: the label alone gives it away
    assert KEY not in out and MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "X-Auth-Token: MIIZ-huawei-iam-token rejected",
        "x-auth-token=MIIZ-huawei-iam-token",
        "header X-Auth-Token MIIZ-huawei-iam-token is expired",
        "'X-Auth-Token': 'MIIZ-huawei-iam-token'",
    ],
)
def test_echoed_x_auth_token_values_are_removed(text: str) -> None:
    out = Redactor().redact(text)
    assert "MIIZ-huawei-iam-token" not in out and MASK in out


def test_configured_secrets_are_removed_anywhere() -> None:
    redactor = Redactor(["s3cret-value", "", "   ", "abc"])  # empty and too short ones are ignored
    redactor.register(SecretStr("other-key"))
    redactor.register(None)
    out = redactor.redact("prefixs3cret-valuesuffix and (other-key) and s3cret-value")
    assert "s3cret-value" not in out and "other-key" not in out
    assert out == f"prefix{MASK}suffix and ({MASK}) and {MASK}"
    assert Redactor(["", " ", "a", " b  "]).redact("a b c") == "a b c"


def test_a_secret_containing_another_is_removed_whole() -> None:
    assert Redactor(["abc", "abcdef"]).redact("xabcdefx") == f"x{MASK}x"


def test_the_length_is_capped_with_an_ellipsis() -> None:
    out = Redactor(limit=300).redact("x" * 10_000)
    assert len(out) == 300 and out.endswith("…")
    assert Redactor(limit=300).redact("short") == "short"


def test_a_secret_crossing_the_cap_is_removed_before_cutting() -> None:
    secret = "K" * 50
    out = Redactor([secret], limit=100).redact("x" * 90 + secret)
    assert "K" not in out and len(out) <= 100


def test_masks_shorter_than_secrets_never_pull_a_cut_secret_into_view() -> None:
    secret = "L" * 5000
    text = (secret + "q") * 40 + secret[:3000]
    out = Redactor([secret]).redact(text)
    assert "LLLL" not in out and len(out) == 300


def test_control_characters_cannot_start_a_new_log_line() -> None:
    assert Redactor().redact("bad\r\nlevel=INFO forged\x1b[31m") == "bad  level=INFO forged [31m"


def test_ordinary_words_are_left_alone() -> None:
    text = "authorization failed; tokens left: 3; no bearer"
    assert Redactor().redact(text) == text


def test_a_redactor_built_from_the_settings_holds_every_secret_they_hold() -> None:
    settings = load_settings(
        hive={"visual_key": "hive-visual-key", "index_key": SecretStr("hive-index-key\n")},
        huawei={"token": "huawei-token-1"},
        callbacks={"token": "callback-token-1"},
        schema_registry={"bearer_token": "registry-bearer-1"},
        kafka={"client_config": {"sasl.password": "kafka-password-1", "client.id": "moderation"}},
    )
    redactor = redactor_for(settings)
    secrets = ["hive-visual-key", "hive-index-key", "huawei-token-1", "callback-token-1"]
    secrets += ["registry-bearer-1", "kafka-password-1"]
    assert redactor.redact(" / ".join(secrets)) == " / ".join([MASK] * len(secrets))
    assert redactor.redact("client moderation") == "client moderation"  # not a secret setting
    assert Redactor().redact("hive-visual-key") == "hive-visual-key"  # no process-wide state


def test_a_checks_secret_options_are_added() -> None:
    class Options(BaseModel):
        token: SecretStr
        note: str = "visible-note"

    redactor = Redactor()
    redactor.register_options(Options(token=SecretStr("option-secret-1")))
    redactor.register_options(None)  # a check without options
    assert redactor.redact("option-secret-1 visible-note") == f"{MASK} visible-note"
