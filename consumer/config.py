"""One validated settings object, from environment variables and an optional YAML file.

Environment variables are ``MODERATION_<SECTION>__<FIELD>`` (e.g. ``MODERATION_KAFKA__BOOTSTRAP_SERVERS``);
the YAML file (``MODERATION_CONFIG`` or ``--config``) has the same nesting. Environment wins over YAML.
API keys are ``SecretStr`` and can also come from files (``hive.csam_key_file``), never from logs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

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
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

__all__ = [
    "CHECKS",
    "CallbackSettings",
    "HealthSettings",
    "HiveSettings",
    "HuaweiSettings",
    "KafkaSettings",
    "ProcessingSettings",
    "Settings",
    "load_settings",
]

AsyncMedia = Literal["IMAGE", "GIF", "VIDEO"]
CHECKS = ("visual", "text", "csam", "similarity")
ENV_PREFIX = "MODERATION_"


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
    ordering: Literal["KEY", "PARTITION", "UNORDERED"] = Field(
        default="KEY", description="KEY: per-key offset order, keys in parallel; PARTITION: one per partition"
    )
    max_in_flight: int = Field(default=256, ge=1, le=100_000)
    http_transport: Literal["lean", "aiohttp", "httpx"] = Field(
        default="lean",
        description="transport under the httpx request/response API (lean: least CPU)",
    )
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
    """Read YAML (if any), then the environment; raise ConfigError naming the first bad setting."""
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError("config file", f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError("config file", f"{path} is not valid YAML: {_first_line(str(exc))}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("config file", f"{path} must hold a mapping of sections")
        data = loaded or {}
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        env = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif err["type"] == "literal_error":
            msg = "expected " + msg.removeprefix("Input should be ")
        raise ConfigError(f"{loc} ({env})", msg) from None


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return v.rstrip("/")


def _secret_from_file(section: BaseModel, field: str) -> None:
    path: Path | None = getattr(section, f"{field}_file")
    if path is None:
        return
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{field}_file: cannot read {path}: {exc.strerror}") from None
    setattr(section, field, SecretStr(value))


def _first_line(text: str) -> str:
    return " ".join(text.split())
