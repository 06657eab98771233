"""The settings sections (one pydantic model each), their validators, and secrets read from files.
``config.Settings`` gathers them; this module holds what each section accepts."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from consumer.core.scheduler import Mode
from consumer.errors import ConfigError, UnreadableFile

__all__ = [
    "ENV_PREFIX",
    "MAX_SECRET_FILE_BYTES",
    "AsyncMedia",
    "CallbackSettings",
    "HealthSettings",
    "HiveSettings",
    "HuaweiSettings",
    "KafkaSettings",
    "LimitSettings",
    "MediaSettings",
    "ProcessingSettings",
    "SchemaRegistrySettings",
    "SerializationSettings",
    "os_reason",
    "read_text",
]

AsyncMedia = Literal["IMAGE", "GIF", "VIDEO"]
CheckName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ENV_PREFIX = "MODERATION_"
MAX_SECRET_FILE_BYTES = 64 << 10  # *_key_file, token_file


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
    shadow_topic: str = Field(
        default="moderation.shadow", description="where a shadow policy's disagreements go (ShadowDecision)"
    )
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
            self.shadow_topic,
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


class SchemaRegistrySettings(_Section):
    """A Confluent-compatible schema registry: Confluent Schema Registry, Apicurio Registry
    (``https://host/apis/ccompat/v7``) or Karapace. Without a URL, records are single-object encoded."""

    url: str | None = Field(default=None, description="the registry's Confluent-compatible API")
    basic_auth_user_info: SecretStr | None = Field(default=None, description="user:password")
    basic_auth_user_info_file: Path | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    bearer_logical_cluster: str = Field(default="", description="Confluent Cloud: the registry's lsrc id")
    bearer_identity_pool: str = ""
    auto_register: bool = Field(
        default=False,
        description="register the shipped schemas on first use (the demo); else `schemas register`",
    )
    subject_name_strategy: Literal["topic", "record"] = Field(
        default="topic",
        description="topic: <topic>-value (TopicNameStrategy); record: the record's full name",
    )
    compatibility: Literal[
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
    ] = Field(default="BACKWARD", description="what `schemas register` sets on each subject")
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    retry_max_delay_s: float = Field(
        default=10.0, gt=0, le=600, description="longest wait between tries while the registry is unreachable"
    )
    accepted_subjects: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="subjects whose registered versions are also accepted as writer schemas of our inputs"
        " (besides each input topic's own subject)",
    )
    refused_id_ttl_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="how long a schema id the registry does not know, or that is refused, is remembered",
    )

    _url = field_validator("url")(classmethod(lambda cls, v: v if v is None else _http_url(v)))

    @model_validator(mode="after")
    def _secrets_from_files(self) -> SchemaRegistrySettings:
        _secret_from_file(self, "basic_auth_user_info")
        _secret_from_file(self, "bearer_token")
        if self.basic_auth_user_info is not None and self.bearer_token is not None:
            raise ValueError("set basic_auth_user_info or bearer_token, not both")
        return self


class SerializationSettings(_Section):
    format: Literal["confluent", "single_object"] | None = Field(
        default=None,
        description="what we write: confluent (magic byte 0 + schema id; needs schema_registry.url) or "
        "single_object (C3 01 + fingerprint); default: confluent when a registry URL is set. Both are read.",
    )


class HealthSettings(_Section):
    """``/healthz``, ``/readyz`` and ``/metrics`` on a small HTTP server (port 0: any free port)."""

    enabled: bool = True
    host: str = "0.0.0.0"  # nosec B104  # listens on the pod's interfaces by design (probes, scrapes, callbacks); set host to narrow
    port: int = Field(default=8080, ge=0, le=65535)


class CallbackSettings(_Section):
    """The receiver of Hive async task callbacks (used for videos)."""

    host: str = "0.0.0.0"  # nosec B104  # listens on the pod's interfaces by design (probes, scrapes, callbacks); set host to narrow
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
        default=1 << 20,
        ge=1,
        description="input records larger than this (key, value and headers) are dead letters",
    )
    max_header_count: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="input records with more headers are dead letters, their headers cut",
    )
    max_header_bytes: int = Field(
        default=64 << 10,
        ge=0,
        description="input records whose headers (names and values) weigh more are dead letters,"
        " their headers cut",
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
    checks: list[CheckName] = Field(
        default_factory=lambda: ["csam", "visual", "text", "similarity"],
        description="registered checks that run; an empty list measures the framework alone (benchmarks)",
    )
    async_media: list[AsyncMedia] = Field(
        default_factory=lambda: list[AsyncMedia](["VIDEO"]),
        description="media types checked through async tasks + callbacks",
    )


def read_text(path: Path, limit: int) -> str:
    """A regular file's UTF-8 text (at most ``limit`` bytes; a BOM is dropped)."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise UnreadableFile("not a regular file")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"over the {limit}-byte limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text (invalid byte at offset {exc.start})") from None


def os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return v.rstrip("/")


def _secret_from_file(section: BaseModel, field: str) -> None:
    path: Path | None = getattr(section, f"{field}_file")
    if path is None:
        return
    try:
        value = read_text(path, MAX_SECRET_FILE_BYTES).strip()
    except OSError as exc:
        reason = os_reason(exc)
    except UnreadableFile as exc:
        reason = str(exc)
    else:
        setattr(section, field, SecretStr(value))
        return
    raise PydanticCustomError(
        "secret_file",
        "cannot read {path}: {reason}",
        {"field": f"{field}_file", "path": str(path), "reason": reason},
    )
