"""One validated settings object, from environment variables and an optional YAML file.

Environment variables are ``MODERATION_<SECTION>__<FIELD>`` (e.g. ``MODERATION_KAFKA__BOOTSTRAP_SERVERS``);
the YAML file (``MODERATION_CONFIG`` or ``--config``) has the same nesting. Environment wins over YAML.
API keys are ``SecretStr`` and can also come from files (``hive.csam_key_file``), never from logs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from consumer.core.scheduler import Mode
from consumer.errors import ConfigError

__all__ = [
    "CHECKS",
    "MAX_CONFIG_FILE_BYTES",
    "MAX_SECRET_FILE_BYTES",
    "CallbackSettings",
    "HealthSettings",
    "HiveSettings",
    "HuaweiSettings",
    "KafkaSettings",
    "MediaSettings",
    "ProcessingSettings",
    "Settings",
    "config_error_from",
    "load_settings",
    "location",
    "read_yaml_file",
    "validation_message",
]

AsyncMedia = Literal["IMAGE", "GIF", "VIDEO"]
CHECKS = ("visual", "text", "csam", "similarity")
ENV_PREFIX = "MODERATION_"
MAX_CONFIG_FILE_BYTES = 1 << 20  # settings and policy files
MAX_SECRET_FILE_BYTES = 64 << 10  # *_key_file, token_file
_UNIONS = (Union, UnionType)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "moderation"
    input_topic: str = "uploads"
    verdict_topic: str = "moderation.verdicts"
    review_topic: str = "moderation.review"
    escalation_topic: str = "moderation.escalations"
    dlq_topic: str = "uploads.dlq"
    deleted_topic: str = "uploads.deleted"
    review_decision_topic: str = "moderation.review.decisions"
    callback_topic: str = "moderation.callbacks"
    create_topics: bool = True
    topic_partitions: int = Field(default=12, ge=1, le=10_000)
    commit_interval_ms: int = Field(default=500, ge=10, le=60_000)
    transactional_id: str | None = Field(
        default=None,
        description="exactly_once: the producer's transactional.id; stable per instance so a restart"
        " fences its predecessor at once (default: <group_id>-<hostname>-<worker index>)",
    )
    transaction_timeout_ms: int = Field(default=30_000, ge=1_000, le=900_000)
    client_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka properties for consumer and producer."
    )

    def all_topics(self) -> list[str]:
        return [
            self.input_topic,
            self.verdict_topic,
            self.review_topic,
            self.escalation_topic,
            self.dlq_topic,
            self.deleted_topic,
            self.review_decision_topic,
            self.callback_topic,
        ]

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...]")
        return v


class HiveSettings(_Section):
    base_url: str = "https://api.thehive.ai"
    visual_key: SecretStr | None = None
    text_key: SecretStr | None = None
    csam_key: SecretStr | None = None
    index_key: SecretStr | None = None
    visual_key_file: Path | None = None
    text_key_file: Path | None = None
    csam_key_file: Path | None = None
    index_key_file: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    csam_endpoint: Literal["hash", "combined"] = Field(
        default="hash", description="hash: Thorn hash matching only; combined: hash first, then classifier"
    )
    media_mode: Literal["auto", "url", "upload"] = Field(
        default="auto",
        description="auto: URL media by url, inline media as upload; upload: download URLs first",
    )
    max_upload_bytes: int = Field(default=20_000_000, ge=1)
    api_version: Literal["v1", "v2"] = Field(
        default="v1", description="task API paths: /api/v1/task or /api/v2/task"
    )
    index_async: bool = Field(default=False, description="custom index calls through the async endpoints")

    _url = field_validator("base_url")(classmethod(lambda cls, v: _http_url(v)))

    @model_validator(mode="after")
    def _keys_from_files(self) -> HiveSettings:
        for check in ("visual", "text", "csam", "index"):
            _secret_from_file(self, f"{check}_key")
        return self

    def key(self, check: str) -> SecretStr:
        value: SecretStr | None = getattr(self, f"{check}_key")
        if value is None or not value.get_secret_value():
            raise ConfigError(
                f"hive.{check}_key",
                f"required (set {ENV_PREFIX}HIVE__{check.upper()}_KEY or hive.{check}_key_file)",
            )
        return value


class HuaweiSettings(_Section):
    """Huawei Cloud ImageSearch, the alternative similarity provider (``processing.similarity: huawei``)."""

    base_url: str = "https://imagesearch.ap-southeast-1.myhuaweicloud.com"
    project_id: str = ""
    instance: str = "moderation"
    token: SecretStr | None = None
    token_file: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    search_limit: int = Field(default=10, ge=1, le=100)

    _url = field_validator("base_url")(classmethod(lambda cls, v: _http_url(v)))

    @model_validator(mode="after")
    def _token_from_file(self) -> HuaweiSettings:
        _secret_from_file(self, "token")
        return self

    def auth_token(self) -> SecretStr:
        if self.token is None or not self.token.get_secret_value():
            raise ConfigError(
                "huawei.token", f"required (set {ENV_PREFIX}HUAWEI__TOKEN or huawei.token_file)"
            )
        if not self.project_id:
            raise ConfigError("huawei.project_id", f"required (set {ENV_PREFIX}HUAWEI__PROJECT_ID)")
        return self.token


class MediaSettings(_Section):
    """Media this service downloads itself (``hive.media_mode: upload``, Huawei search) and decodes."""

    download_timeout_s: float = Field(default=30.0, gt=0, le=600, description="a whole download's bound")
    max_redirects: int = Field(default=3, ge=0, le=10)
    allow_networks: list[str] = Field(
        default_factory=list,
        description="networks media may come from although not public (e.g. 127.0.0.1/32 for the"
        " simulator in development)",
    )
    deny_networks: list[str] = Field(default_factory=list, description="networks media never comes from")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="larger images are refused")
    image_workers: int = Field(default=2, ge=1, le=64, description="threads that decode and resize images")

    @field_validator("allow_networks", "deny_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for network in v:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network: {network[:64]!r}") from None
        return v


class HealthSettings(_Section):
    """``/healthz``, ``/readyz`` and ``/metrics`` on a small HTTP server (port 0: any free port)."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)


class CallbackSettings(_Section):
    """The receiver of Hive async task callbacks (used for videos)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8081, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="Base URL providers call back, e.g. https://moderation.example.com"
    )
    token: SecretStr | None = None
    token_file: Path | None = None
    poll_after_s: float = Field(default=30.0, gt=0, description="no callback by then: poll the task")
    poll_interval_s: float = Field(default=5.0, gt=0)
    deadline_s: float = Field(default=300.0, gt=0, description="past it the check fails closed")

    @model_validator(mode="after")
    def _token_from_file(self) -> CallbackSettings:
        _secret_from_file(self, "token")
        return self


class LimitSettings(_Section):
    """Etiquette per check (each check gets its own limiter and breaker with these settings)."""

    initial_concurrency: int = Field(default=16, ge=1)
    max_concurrency: int = Field(default=256, ge=1)
    min_concurrency: int = Field(default=1, ge=1)
    rate_per_s: dict[str, float] = Field(
        default_factory=dict, description="token-bucket rate per check (csam, visual, text, similarity)"
    )
    breaker_threshold: int = Field(default=5, ge=1, description="consecutive failures that open the circuit")
    breaker_cooldown_s: float = Field(default=5.0, gt=0)


class ProcessingSettings(_Section):
    delivery: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="exactly_once: verdicts, dead letters and input offsets in one transaction per interval",
    )
    transaction_interval_ms: int = Field(default=100, ge=10, le=60_000)
    max_record_bytes: int = Field(
        default=1 << 20, ge=1, description="input records larger than this are dead letters"
    )
    dead_letter_refused: bool = Field(
        default=True,
        description="content a provider refuses (corrupt, too small, unreachable) is dead-lettered;"
        " false: a REVIEW verdict with check_rejected:<check>",
    )
    stall_after_s: float = Field(
        default=120.0, gt=0, description="a partition whose oldest in-flight record is older is stalled"
    )
    ordering: Mode = Field(
        default=Mode.KEY,
        description="KEY: per-key offset order, keys in parallel; PARTITION: one per partition",
    )
    max_in_flight: int = Field(default=256, ge=1, le=100_000)
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="the event loop implementation (uvloop: less CPU per upload)"
    )
    max_in_flight_bytes: int = Field(default=64 << 20, ge=1)
    partition_buffer: int = Field(default=500, ge=1, description="waiting records that pause a partition")
    max_buffered_bytes: int = Field(
        default=128 << 20, ge=1, description="waiting bytes that pause everything"
    )
    revoke_drain_s: float = Field(
        default=10.0, ge=0, le=300, description="drain deadline on partition revocation"
    )
    max_poll_records: int = Field(default=500, ge=1, le=100_000)
    inline_media_limit_bytes: int = Field(default=1_000_000, ge=0)
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_delay_s: float = Field(default=0.1, ge=0, le=60)
    retry_max_delay_s: float = Field(default=5.0, ge=0, le=600)
    check_deadline_s: float = Field(default=30.0, gt=0, le=3600)
    drain_timeout_s: float = Field(default=25.0, ge=0, le=3600)
    result_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    similarity: Literal["hive", "huawei", "none"] = "hive"
    checks: list[Literal["csam", "visual", "text", "similarity"]] = Field(
        default_factory=lambda: list[Literal["csam", "visual", "text", "similarity"]](
            ["csam", "visual", "text", "similarity"]
        ),
        description="checks that run; an empty list measures the framework alone (benchmarks)",
    )
    async_media: list[AsyncMedia] = Field(
        default_factory=lambda: list[AsyncMedia](["VIDEO"]),
        description="media types checked through async tasks + callbacks",
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
    media: MediaSettings = Field(default_factory=MediaSettings)
    policy_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("config file", f"{path} must hold a mapping of sections")
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
        text = _read_text(Path(path), MAX_CONFIG_FILE_BYTES)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {_os_reason(exc)}") from None
    except _UnreadableError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
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


class _UnreadableError(Exception):
    """A file that opens but cannot be used as text; ``str()`` is safe to show after its path."""


def _read_text(path: Path, limit: int) -> str:
    """A regular file's UTF-8 text (at most ``limit`` bytes; a BOM is dropped)."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise _UnreadableError("not a regular file")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _UnreadableError(f"over the {limit}-byte limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _UnreadableError(f"not UTF-8 text (invalid byte at offset {exc.start})") from None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


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


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return v.rstrip("/")


def _secret_from_file(section: BaseModel, field: str) -> None:
    path: Path | None = getattr(section, f"{field}_file")
    if path is None:
        return
    try:
        value = _read_text(path, MAX_SECRET_FILE_BYTES).strip()
    except OSError as exc:
        reason = _os_reason(exc)
    except _UnreadableError as exc:
        reason = str(exc)
    else:
        setattr(section, field, SecretStr(value))
        return
    raise PydanticCustomError(
        "secret_file",
        "cannot read {path}: {reason}",
        {"field": f"{field}_file", "path": str(path), "reason": reason},
    )


def _one_line(text: str, limit: int) -> str:
    """Whitespace runs (newlines too) as one space, other control characters dropped, capped."""
    flat = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
