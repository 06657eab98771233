"""The check registry: declarations, what the settings and the policy may name, entry points."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from consumer.checks.builtin import BUILTIN_CHECKS, default_registry
from consumer.checks.pipeline import ActiveCheck, Pipeline, SourcePosition
from consumer.checks.providers import Checked
from consumer.checks.redaction import Redactor
from consumer.checks.registry import (
    ENTRY_POINT_GROUP,
    BuildContext,
    CheckClient,
    CheckRegistry,
    CheckSpec,
    Feeds,
    Subject,
)
from consumer.config import load_settings
from consumer.core.records import Decision, MediaType, UploadEvent
from consumer.errors import ConfigError
from consumer.policy.decision import Frame
from consumer.policy.tenants import load_policies
from consumer.transports.httpclient import HttpClient
from consumer.wiring import build_pipeline, check_settings

SRC = SourcePosition("uploads", 0, 1)


class WordsOptions(BaseModel):
    words: list[str]
    token: SecretStr | None = None


async def _no_call(subject: Subject) -> Checked[Sequence[Frame]]:
    raise AssertionError("not called")


def _build_words(ctx: BuildContext) -> CheckClient:
    words = set(ctx.options.words)

    async def classify(subject: Subject) -> Checked[Sequence[Frame]]:
        found = words & set((subject.upload.text or "").split())
        return Checked([Frame(0.0, {"listed_word": 1.0 if found else 0.0})], "local")

    return CheckClient("local", classify)


WORDS = CheckSpec(
    "words", Feeds.CLASSIFICATION, frozenset({MediaType.TEXT}), _build_words, options=WordsOptions
)


def _registry() -> CheckRegistry:
    registry = CheckRegistry(BUILTIN_CHECKS)
    registry.register(WORDS)
    return registry


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        _registry().register(WORDS)
    with pytest.raises(ValueError, match="already registered"):
        CheckRegistry().register(
            CheckSpec("pipeline", Feeds.CLASSIFICATION, frozenset(MediaType), _build_words)
        )


def test_a_declaration_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        CheckSpec("Words", Feeds.CLASSIFICATION, frozenset({MediaType.TEXT}), _build_words)
    with pytest.raises(ValueError, match="no media type"):
        CheckSpec("words", Feeds.CLASSIFICATION, frozenset(), _build_words)
    with pytest.raises(ValueError, match="cannot be live"):
        CheckSpec(
            "words", Feeds.SIMILARITY, frozenset({MediaType.IMAGE}), _build_words, first=True, live=True
        )


def test_first_checks_run_ahead_of_the_rest() -> None:
    registry = CheckRegistry((WORDS, *BUILTIN_CHECKS))
    assert next(s.name for s in registry) == "csam"
    assert [s.name for s in registry.selected(["similarity", "words", "csam"])] == [
        "csam",
        "words",
        "similarity",
    ]


def test_settings_may_name_only_registered_checks() -> None:
    settings = load_settings(processing={"checks": ["text", "wordz"]}, hive={"text_key": "k"})
    with pytest.raises(
        ConfigError, match=r"processing\.checks: unknown check 'wordz' \(registered: csam, visual"
    ):
        check_settings(settings, _registry())


def test_a_checks_options_are_validated_at_start() -> None:
    settings = load_settings(processing={"checks": ["words"]}, check_options={"words": {"words": "oops"}})
    with pytest.raises(ConfigError, match=r"check_options\.words\.words"):
        check_settings(settings, _registry())
    settings = load_settings(
        processing={"checks": ["csam"]}, hive={"csam_key": "k"}, check_options={"csam": {"x": 1}}
    )
    with pytest.raises(ConfigError, match=r"check_options\.csam: this check takes no options"):
        check_settings(settings, _registry())
    settings = load_settings(processing={"checks": []}, check_options={"wrods": {"words": []}})
    with pytest.raises(ConfigError, match=r"check_options\.wrods: no check named 'wrods' is registered"):
        check_settings(settings, _registry())


def test_the_policy_may_name_only_registered_checks(tmp_path: Path) -> None:
    typo = _policy(tmp_path, "version: x\nclassification:\n  visaul:\n    general_nsfw: {review: 0.5}\n")
    with pytest.raises(ConfigError, match=r"policy classification\.visaul: no check named 'visaul'"):
        load_policies(typo, _registry())
    with pytest.raises(ConfigError, match="policy fail_open: no check named 'nope'"):
        load_policies(_policy(tmp_path, "version: x\nfail_open: [nope]\n"), _registry())


def test_a_check_may_refuse_to_fail_open(tmp_path: Path) -> None:
    strict = CheckSpec(
        "strict", Feeds.CLASSIFICATION, frozenset({MediaType.TEXT}), _build_words, may_fail_open=False
    )
    registry = CheckRegistry((strict,))
    with pytest.raises(ConfigError, match="policy fail_open: strict can never fail open"):
        load_policies(_policy(tmp_path, "version: x\nfail_open: [strict]\n"), registry)


async def test_a_registered_check_is_built_run_and_decided(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "version: w\nclassification:\n  words:\n    listed_word: {block: 0.5}\n")
    settings = load_settings(
        processing={"checks": ["words"]},
        check_options={"words": {"words": ["forbidden"], "token": "words-secret-1"}},
        policy_file=str(policy),
    )
    redactor = Redactor()
    pipeline = build_pipeline(settings, HttpClient(), registry=_registry(), redactor=redactor)
    text = UploadEvent("u", "t", "u", MediaType.TEXT, 0, text="a forbidden word")
    verdict = await pipeline.moderate(text, SRC)
    assert verdict.decision is Decision.BLOCK  # type: ignore[union-attr]
    assert verdict.reasons[0].check == "words"  # type: ignore[union-attr]
    image = UploadEvent("i", "t", "u", MediaType.IMAGE, 0, media_bytes=b"x")
    assert pipeline.decide_now(image, SRC) is not None  # no check applies to images here
    assert "words-secret-1" not in redactor.redact("echoed words-secret-1")  # its secret option is redacted


def test_checks_switched_off_by_their_settings_are_not_active() -> None:
    settings = load_settings(processing={"checks": ["similarity"], "similarity": "none"})
    pipeline = build_pipeline(settings, HttpClient(), registry=_registry())
    assert pipeline.checks == () and pipeline.index is None


def test_installed_packages_add_checks_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution on the path that declares ``moderation_consumer.checks`` entry points."""
    (tmp_path / "words_plugin.py").write_text(
        "from consumer.checks.registry import CheckSpec, Feeds\n"
        "from consumer.core.records import MediaType\n"
        "WORDS = CheckSpec('plugin_words', Feeds.CLASSIFICATION, frozenset({MediaType.TEXT}), print)\n"
        "NOT_A_SPEC = 42\n"
    )
    info = tmp_path / "words_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: words-plugin\nVersion: 1.0\n")
    entry_points = info / "entry_points.txt"
    entry_points.write_text(f"[{ENTRY_POINT_GROUP}]\nplugin_words = words_plugin:WORDS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin_words" in default_registry()
    entry_points.write_text(f"[{ENTRY_POINT_GROUP}]\nbroken = words_plugin:NOT_A_SPEC\n")
    with pytest.raises(ConfigError, match="entry point broken: words_plugin:NOT_A_SPEC is not a CheckSpec"):
        default_registry()


def test_an_active_check_keeps_its_gate() -> None:
    check = ActiveCheck(WORDS, CheckClient("local", _no_call))
    assert Pipeline([check], load_policies()).gates == {}
