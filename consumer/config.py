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

__all__ = ["CHECKS", "HiveSettings", "KafkaSettings", "ProcessingSettings", "Settings", "load_settings"]

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
    create_topics: bool = True
    topic_partitions: int = Field(default=12, ge=1, le=10_000)
    commit_interval_ms: int = Field(default=500, ge=10, le=60_000)
    client_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka properties for consumer and producer."
    )

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

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _keys_from_files(self) -> HiveSettings:
        for check in ("visual", "text", "csam", "index"):
            path: Path | None = getattr(self, f"{check}_key_file")
            if path is None:
                continue
            try:
                key = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"{check}_key_file: cannot read {path}: {exc.strerror}") from None
            setattr(self, f"{check}_key", SecretStr(key))
        return self

    def key(self, check: str) -> SecretStr:
        value: SecretStr | None = getattr(self, f"{check}_key")
        if value is None or not value.get_secret_value():
            raise ConfigError(
                f"hive.{check}_key",
                f"required (set {ENV_PREFIX}HIVE__{check.upper()}_KEY or hive.{check}_key_file)",
            )
        return value


class ProcessingSettings(_Section):
    max_in_flight: int = Field(default=256, ge=1, le=100_000)
    max_poll_records: int = Field(default=500, ge=1, le=100_000)
    inline_media_limit_bytes: int = Field(default=1_000_000, ge=0)
    retry_attempts: int = Field(default=4, ge=1, le=20)
    retry_base_delay_s: float = Field(default=0.1, ge=0, le=60)
    retry_max_delay_s: float = Field(default=5.0, ge=0, le=600)
    check_deadline_s: float = Field(default=30.0, gt=0, le=3600)
    drain_timeout_s: float = Field(default=25.0, ge=0, le=3600)
    result_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    similarity: Literal["hive", "none"] = "hive"


class Settings(BaseSettings):
    """Everything the service reads at start. Construct through ``load_settings``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    hive: HiveSettings = Field(default_factory=HiveSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
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


def _first_line(text: str) -> str:
    return " ".join(text.split())
