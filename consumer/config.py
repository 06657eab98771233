"""One validated settings object, from environment variables and an optional YAML file (the
sections it gathers are in ``settings_sections``: import a section's class from there).

Environment variables are ``MODERATION_<SECTION>__<FIELD>`` (e.g. ``MODERATION_KAFKA__BOOTSTRAP_SERVERS``);
the YAML file (``MODERATION_CONFIG`` or ``--config``) has the same nesting. Environment wins over YAML.
API keys are ``SecretStr`` and can also come from files (``hive.csam_key_file``), never from logs;
those of ``ROTATING_SECRETS`` are re-read when their files change (``live_secret``, ``runtime.secrets``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from consumer.core.secrets import RotatingSecret
from consumer.errors import ConfigError, UnreadableFile
from consumer.settings_sections import (
    ENV_PREFIX,
    CallbackSettings,
    HealthSettings,
    HiveSettings,
    HuaweiSettings,
    KafkaSettings,
    LimitSettings,
    MediaSettings,
    ProcessingSettings,
    SchemaRegistrySettings,
    SerializationSettings,
    TracingSettings,
    os_reason,
    read_text,
)

__all__ = [
    "MAX_CONFIG_FILE_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "ROTATING_SECRETS",
    "Settings",
    "config_error_from",
    "load_settings",
    "location",
    "read_yaml_file",
    "validation_message",
]

MAX_CONFIG_FILE_BYTES = 1 << 20  # settings and policy files
# A settings or policy file's document is bounded before anything is built from it: no anchors or
# aliases (a few bytes naming a large part again: 1 MB of them grew to 3 GB once merged and
# validated), at most this many values (scalars, mappings and lists, keys included) and this depth.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 32
_UNIONS = (Union, UnionType)
# the secrets re-read when their ``*_file`` changes (the callback token is not: it is part of the
# callback URLs tasks in flight were given)
ROTATING_SECRETS = (
    "hive.visual_key",
    "hive.text_key",
    "hive.csam_key",
    "hive.index_key",
    "huawei.token",
    "schema_registry.basic_auth_user_info",
    "schema_registry.bearer_token",
)


class Settings(BaseSettings):
    """Everything the service reads at start. Construct through ``load_settings``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    hive: HiveSettings = Field(default_factory=HiveSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    huawei: HuaweiSettings = Field(default_factory=HuaweiSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    serialization: SerializationSettings = Field(default_factory=SerializationSettings)
    check_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="each check's own settings, by check name, validated by its declaration at start (the"
        " shipped checks take none: theirs are under `hive` and `huawei`)",
    )
    policy_file: Path | None = Field(
        default=None,
        description="the policy file: thresholds and tenant overrides, reloaded while running (unset: the"
        " shipped `consumer/policy/default_policy.yaml`)",
    )
    shadow_policy_file: Path | None = Field(
        default=None,
        description="a candidate policy decided beside the live one on the same check results; its"
        " disagreements go to `kafka.shadow_topic` (no extra provider call)",
    )
    policy_reload_interval_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="how often the policy files are looked at for a change (0: only on SIGHUP)",
    )
    secret_reload_interval_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="how often the files of the provider keys and registry credentials (`*_file`) are"
        " looked at for a change, read again and applied to the next call (0: only on SIGHUP)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="the lowest level logged (JSON lines on stderr)",
    )

    _live: dict[str, RotatingSecret] = PrivateAttr(default_factory=dict)

    def live_secret(self, setting: str) -> RotatingSecret | None:
        """The holder of a secret in ``ROTATING_SECRETS`` (e.g. ``hive.visual_key``), None when
        unset: the value read at start, replaced when its ``*_file`` changes (``runtime.secrets``).
        One holder per setting per Settings object: whoever asks shares it."""
        live = self._live.get(setting)
        if live is None:
            if setting not in ROTATING_SECRETS:
                raise KeyError(setting)
            section, field = setting.split(".")
            value: SecretStr | None = getattr(getattr(self, section), field)
            if value is None or not value.get_secret_value():
                return None
            live = self._live.setdefault(setting, RotatingSecret(setting, value.get_secret_value()))
        return live

    def secret_files(self) -> dict[str, Path]:
        """setting -> its file, for each secret of ``ROTATING_SECRETS`` that is read from a file."""
        found = {}
        for setting in ROTATING_SECRETS:
            section, field = setting.split(".")
            path: Path | None = getattr(getattr(self, section), f"{field}_file")
            if path is not None:
                found[setting] = path
        return found

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read YAML (if any), then the environment; raise ConfigError naming the first bad setting.

    No message ever quotes a file's contents or a setting's value (either may hold a secret).
    """
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    data: dict[str, Any] = {}
    if path:
        loaded = read_yaml_file(path, "config file")
        if loaded is not None and (
            not isinstance(loaded, dict) or not all(isinstance(key, str) for key in loaded)
        ):
            raise ConfigError("config file", f"{path} must hold a mapping of sections (by name)")
        data = loaded or {}
    data.update(overrides)
    try:
        return Settings(**data)
    except (ValidationError, SettingsError) as exc:
        raise config_error_from(exc) from None
    except RecursionError:
        raise _unparsable_variable(Settings.model_fields) or ConfigError(
            "settings", "a value is nested too deeply"
        ) from None


def read_yaml_file(path: Path | str, setting: str) -> Any:
    """A YAML file's data; ConfigError (one line, no contents quoted) if unreadable or not YAML."""
    try:
        text = read_text(Path(path), MAX_CONFIG_FILE_BYTES)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {os_reason(exc)}") from None
    except UnreadableFile as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # nosec B506  # _UniqueKeyLoader is a yaml.SafeLoader subclass: builds no arbitrary objects
    except _Refused as exc:
        raise ConfigError(setting, f"{path} is refused: {_yaml_problem(exc)}") from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(setting, f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    except yaml.reader.ReaderError as exc:
        char = ord(exc.character) if isinstance(exc.character, str) else exc.character
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            setting, f"{path} is not valid YAML: unacceptable character #x{char:04x} at line {line}"
        ) from None
    except yaml.YAMLError:
        raise ConfigError(setting, f"{path} is not valid YAML") from None
    except RecursionError:
        raise ConfigError(setting, f"{path} is not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError):  # a scalar the safe loader cannot build (a bad date)
        raise ConfigError(setting, f"{path} is not valid YAML: a value cannot be converted") from None


def config_error_from(exc: ValidationError | SettingsError) -> ConfigError:
    """The ConfigError (one line, naming the setting and its variable, never the value) for an error
    ``Settings(...)`` raised."""
    if isinstance(exc, SettingsError):
        return _settings_error(exc)
    err = exc.errors()[0]
    loc: tuple[int | str, ...] = tuple(err["loc"])
    if err["type"] == "secret_file":
        loc = (*loc, str((err.get("ctx") or {}).get("field", "")))
    env = _env_name(loc)
    setting = location(loc) or "settings"
    return ConfigError(f"{setting} ({env})" if env else setting, validation_message(err))


def validation_message(err: ErrorDetails) -> str:
    """A pydantic error's message, one line, that never repeats the input (it may be a secret)."""
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown setting"
    elif kind == "literal_error":
        msg = "expected " + msg.removeprefix("Input should be ")
    # secret_file is ours: it names the file's path (the section's input), never its contents
    for text in () if kind == "secret_file" else _input_strings(err.get("input")):
        for quoted in (repr(text), f"'{text}'", f'"{text}"'):  # how validators quote a value
            msg = msg.replace(quoted, "'…'")
        if len(text) >= 8 and text[:8] in msg:  # unquoted or truncated: say nothing of it
            msg = f"invalid value ({kind})"
    return _one_line(msg, 300)


def _input_strings(value: Any) -> list[str]:
    """The input's string, or the strings directly inside a list or mapping input."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    return [item for item in items if isinstance(item, str)]


def location(loc: tuple[int | str, ...]) -> str:
    """``kafka.client_config`` from a pydantic error location, each part printable and short."""
    return ".".join(_one_line(str(part), 64) for part in loc)


def _env_name(loc: tuple[int | str, ...]) -> str | None:
    """The variable that sets ``loc``: a section's field (two parts) or a top-level setting (one)."""
    if not loc or not isinstance(loc[0], str) or loc[0] not in Settings.model_fields:
        return None
    section = _section_model(loc[0])
    parts = loc[:2] if section is not None and len(loc) > 1 and str(loc[1]).isidentifier() else loc[:1]
    return ENV_PREFIX + "__".join(str(p).upper() for p in parts)


_SETTINGS_ERROR_FIELD = re.compile(r'value for field "(\w+)"')


def _settings_error(exc: SettingsError) -> ConfigError:
    """pydantic-settings names only the top-level field whose variables failed to parse (the
    complex ones must be JSON): find the variable by parsing them again."""
    found = _SETTINGS_ERROR_FIELD.search(str(exc))
    field = found.group(1) if found else None
    if field is None or field not in Settings.model_fields:
        return _unparsable_variable(Settings.model_fields) or ConfigError(
            "settings", "an environment variable cannot be parsed (complex settings take JSON)"
        )
    return _unparsable_variable([field]) or ConfigError(
        f"{field} ({ENV_PREFIX}{field.upper()}__*)", "cannot be parsed (complex settings take JSON)"
    )


def _unparsable_variable(fields: Iterable[str]) -> ConfigError | None:
    for field in fields:
        for setting, env, value in _complex_variables(field):
            problem = _json_problem(value)
            if problem:
                return ConfigError(f"{setting} ({env})", problem)
    return None


def _complex_variables(field: str) -> list[tuple[str, str, str]]:
    """(setting, variable, value) of the set variables under ``field`` that are read as JSON."""
    section = _section_model(field)
    head = f"{ENV_PREFIX}{field}".upper()
    found = []
    for env, value in os.environ.items():
        name = env.upper()
        if name == head and (section is not None or _is_complex(Settings.model_fields[field].annotation)):
            found.append((field, env, value))
        elif section is not None and name.startswith(head + "__"):
            sub = name[len(head) + 2 :].split("__", 1)[0].lower()
            info = section.model_fields.get(sub)
            if info is not None and "__" not in name[len(head) + 2 :] and _is_complex(info.annotation):
                found.append((f"{field}.{sub}", env, value))
    return found


def _section_model(field: str) -> type[BaseModel] | None:
    annotation = Settings.model_fields[field].annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _is_complex(annotation: Any) -> bool:
    """Whether pydantic-settings reads this type's variable as JSON (containers and models)."""
    args = (
        [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) in _UNIONS else []
    )
    if args:
        return any(_is_complex(a) for a in args)
    origin = get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, BaseModel):
        return True
    return origin in (dict, list, set, frozenset, tuple)


def _json_problem(value: str) -> str | None:
    try:
        json.loads(value)
    except ValueError:
        return "not valid JSON"
    except RecursionError:
        return "not valid JSON (nested too deeply)"
    return None


class _Refused(yaml.composer.ComposerError):
    """A document over the loader's bounds (an anchor or alias, too many values, too deep)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that repeats a key (PyYAML keeps the last silently: a
    tenant listed twice in a policy, or a setting given twice, would lose one without a word), and
    a document over its bounds, as it is composed (before any object is built): an anchor or an
    alias (``&x``, ``*x``, so ``<<: *x`` merge keys too), more than ``MAX_YAML_VALUES`` values or
    more than ``MAX_YAML_DEPTH`` levels."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, "YAML anchors and aliases (&, *) are not accepted", event.start_mark)
        self._values += 1
        if self._values > MAX_YAML_VALUES:
            raise _Refused(None, None, f"more than {MAX_YAML_VALUES} values", event.start_mark)
        if self._depth >= MAX_YAML_DEPTH:
            raise _Refused(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found duplicate key",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_KEEP_QUOTED = re.compile(r"'(<[a-z ]+>|.{0,2})'")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """The parser's fixed phrase and where, never the snippet of the line (it may hold a secret).
    Quoted parts longer than a character or two (a tag, an anchor name) are elided."""
    problem = _QUOTED.sub(
        lambda m: m[0] if _KEEP_QUOTED.fullmatch(m[0]) else "'…'", exc.problem or "syntax error"
    )
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return _one_line(problem, 200) + where


def _one_line(text: str, limit: int) -> str:
    """Whitespace runs (newlines too) as one space, other control characters dropped, capped."""
    flat = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
