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
from consumer.core.secrets import MAX_SECRET_FILE_BYTES, secret_text
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
    "TracingSettings",
    "os_reason",
    "read_secret_file",
    "read_text",
]

AsyncMedia = Literal["IMAGE", "GIF", "VIDEO"]
CheckName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ENV_PREFIX = "MODERATION_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    """The brokers, the topics and how offsets and transactions are committed."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="the brokers to bootstrap from: `host:port[,host:port...]`",
    )
    group_id: str = Field(
        default="moderation",
        description="the consumer group; scale out by running more processes (or `--workers`) in the same"
        " group",
    )
    input_topic: str = Field(
        default="uploads",
        description="`UploadEvent` records to moderate, keyed by upload id",
    )
    verdict_topic: str = Field(
        default="moderation.verdicts",
        description="every verdict (`ModerationVerdict`), keyed by upload id",
    )
    review_topic: str = Field(
        default="moderation.review",
        description="REVIEW verdicts, written here too",
    )
    escalation_topic: str = Field(
        default="moderation.escalations",
        description="ESCALATE verdicts, written here too",
    )
    dlq_topic: str = Field(
        default="uploads.dlq",
        description="dead letters: input records that cannot be moderated, whole, with provenance headers"
        " (`dlq replay` puts them back)",
    )
    deleted_topic: str = Field(
        default="uploads.deleted",
        description="`UploadDeleted` events: the deleted upload leaves the similarity index",
    )
    review_decision_topic: str = Field(
        default="moderation.review.decisions",
        description="`ReviewDecision` events: a BLOCK confirmed by a reviewer joins the similarity index",
    )
    callback_topic: str = Field(
        default="moderation.callbacks",
        description="internal: async task callbacks, signed and relayed to every process of the group",
    )
    shadow_topic: str = Field(
        default="moderation.shadow",
        description="a shadow policy's disagreements with the live one (`ShadowDecision`)",
    )
    create_topics: bool = Field(
        default=True,
        description="create missing topics at start (with `topic_partitions` partitions)",
    )
    topic_partitions: int = Field(
        default=12,
        ge=1,
        le=10_000,
        description="partitions of the topics the service creates",
    )
    commit_interval_ms: int = Field(
        default=500,
        ge=10,
        le=60_000,
        description="how often finished input offsets are committed (at_least_once)",
    )
    transactional_id: str | None = Field(
        default=None,
        description="`exactly_once`: the producer's `transactional.id`; give each instance a stable one"
        " (e.g. the StatefulSet pod's name) so a restart fences its predecessor at once instead of waiting"
        " out `transaction_timeout_ms` (unset: `<group_id>-<hostname>-w<worker>-p<pid>`)",
    )
    transaction_timeout_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=900_000,
        description="`exactly_once`: the broker aborts a transaction left open longer (a crashed instance's)",
    )
    client_config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka properties for every consumer, producer and admin client (SASL, TLS,"
        ' timeouts), e.g. `{"security.protocol": "SASL_SSL"}`',
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
    """Hive's APIs: visual and text classification, CSAM hash matching, the custom similarity index. Each
    key can be given directly or as a file (`*_key_file`)."""

    base_url: str = Field(
        default="https://api.thehive.ai",
        description="Hive's API (point it at the simulator for development)",
    )
    visual_key: SecretStr | None = Field(
        default=None,
        description="the visual moderation project's API key (a secret)",
    )
    text_key: SecretStr | None = Field(
        default=None,
        description="the text moderation project's API key (a secret)",
    )
    csam_key: SecretStr | None = Field(
        default=None,
        description="the CSAM (Thorn hash matching, or the combined project's) API key (a secret)",
    )
    index_key: SecretStr | None = Field(
        default=None,
        description="the custom similarity index project's API key (a secret)",
    )
    visual_key_file: Path | None = Field(
        default=None,
        description="a file holding `visual_key` (e.g. a mounted Kubernetes Secret); re-read when it"
        " changes (docs/secrets.md)",
    )
    text_key_file: Path | None = Field(
        default=None,
        description="a file holding `text_key`; re-read when it changes (docs/secrets.md)",
    )
    csam_key_file: Path | None = Field(
        default=None,
        description="a file holding `csam_key`; re-read when it changes (docs/secrets.md)",
    )
    index_key_file: Path | None = Field(
        default=None,
        description="a file holding `index_key`; re-read when it changes (docs/secrets.md)",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="per-attempt HTTP timeout of a Hive call (and the provider client's default)",
    )
    csam_endpoint: Literal["hash", "combined"] = Field(
        default="hash",
        description="`hash`: Thorn hash matching only; `combined`: hash first, then the CSAM classifier"
        " (give the combined project's key as `csam_key`)",
    )
    media_mode: Literal["auto", "url", "upload"] = Field(
        default="auto",
        description="`auto` or `url`: URL media are sent as URLs (downloaded only when a check needs the"
        " bytes), inline media uploaded; `upload`: URL media are downloaded and uploaded (for media hosts"
        " the provider cannot reach)",
    )
    max_upload_bytes: int = Field(
        default=20_000_000,
        ge=1,
        description="the largest media download; larger URL media stay URLs in `upload` mode",
    )
    api_version: Literal["v1", "v2"] = Field(
        default="v1",
        description="task API paths: `/api/v1/task/*` or `/api/v2/task/*`",
    )
    index_async: bool = Field(
        default=False,
        description="custom index add, query and remove through the async endpoints and callbacks",
    )

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

    base_url: str = Field(
        default="https://imagesearch.ap-southeast-1.myhuaweicloud.com",
        description="Huawei Cloud ImageSearch's regional endpoint",
    )
    project_id: str = Field(
        default="",
        description="the Huawei Cloud project id (required with `processing.similarity: huawei`)",
    )
    instance: str = Field(
        default="moderation",
        description="the ImageSearch instance (the image library); the tenant is a tag in it",
    )
    token: SecretStr | None = Field(
        default=None,
        description="the `X-Auth-Token` (an IAM token; a secret)",
    )
    token_file: Path | None = Field(
        default=None,
        description="a file holding `token`; re-read when it changes (docs/secrets.md)",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="per-attempt HTTP timeout of an ImageSearch call",
    )
    search_limit: int = Field(
        default=10,
        ge=1,
        le=100,
        description="results asked for per search",
    )

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

    download_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="a whole media download's bound, redirects included (slow drips end here)",
    )
    max_redirects: int = Field(
        default=3,
        ge=0,
        le=10,
        description="redirects a media download follows, each hop checked against the egress policy",
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="egress policy: networks media may come from although not public (e.g."
        ' `["127.0.0.1/32"]` for the simulator in development)',
    )
    deny_networks: list[str] = Field(
        default_factory=list,
        description="egress policy: networks media never comes from, even when public",
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="larger images are refused before decoding (decompression bombs)",
    )
    image_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="threads that decode and resize images (for Huawei), off the event loop",
    )

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

    url: str | None = Field(
        default=None,
        description="a Confluent-compatible registry's API (Confluent, Apicurio `…/apis/ccompat/v7`,"
        " Karapace); unset: single-object encoding, no registry",
    )
    basic_auth_user_info: SecretStr | None = Field(
        default=None,
        description="`user:password` for the registry (a secret)",
    )
    basic_auth_user_info_file: Path | None = Field(
        default=None,
        description="a file holding `basic_auth_user_info`; re-read when it changes (docs/secrets.md)",
    )
    bearer_token: SecretStr | None = Field(
        default=None,
        description="a static bearer token for the registry (a secret); not with `basic_auth_user_info`",
    )
    bearer_token_file: Path | None = Field(
        default=None,
        description="a file holding `bearer_token`; re-read when it changes (docs/secrets.md)",
    )
    bearer_logical_cluster: str = Field(
        default="",
        description="Confluent Cloud: the registry's logical cluster id (`lsrc-…`)",
    )
    bearer_identity_pool: str = Field(
        default="",
        description="Confluent Cloud: the identity pool id sent with the bearer token",
    )
    auto_register: bool = Field(
        default=False,
        description="register the shipped schemas on first use (the demo); otherwise run `schemas register`"
        " before the service",
    )
    subject_name_strategy: Literal["topic", "record"] = Field(
        default="topic",
        description="`topic`: `<topic>-value` (TopicNameStrategy); `record`: the record's full name",
    )
    compatibility: Literal[
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
    ] = Field(
        default="BACKWARD",
        description="the compatibility level `schemas register` sets on each subject",
    )
    timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="the timeout of each registry request",
    )
    retry_max_delay_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="the longest wait between tries while the registry is unreachable",
    )
    accepted_subjects: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="subjects whose registered versions are also admitted as writer schemas of the inputs"
        " (besides each input topic's own subject)",
    )
    refused_id_ttl_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="how long a schema id the registry does not know, or that is refused, is remembered (no"
        " registry request for it meanwhile)",
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
    """The wire format of what the service writes."""

    format: Literal["confluent", "single_object"] | None = Field(
        default=None,
        description="what is written: `confluent` (magic byte 0 + schema id; needs `schema_registry.url`) or"
        " `single_object` (C3 01 + fingerprint); unset: `confluent` when a registry URL is set. Both are"
        " always read",
    )


class TracingSettings(_Section):
    """Our own tracing choices; everything else is the OpenTelemetry SDK's ``OTEL_*`` variables."""

    process_span_parent: Literal["link", "child"] = Field(
        default="link",
        description="`link`: a record's process span links to the producer's span and starts its own"
        " trace (the messaging conventions); `child`: it is that span's child",
    )


class HealthSettings(_Section):
    """``/healthz``, ``/readyz`` and ``/metrics`` on a small HTTP server (port 0: any free port)."""

    enabled: bool = Field(
        default=True,
        description="serve `/healthz`, `/readyz` and `/metrics`",
    )
    host: str = Field(
        default="0.0.0.0",  # nosec B104  # listens on the pod's interfaces by design (probes, scrapes, callbacks); set host to narrow
        description="the address the health server listens on",
    )
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="its port (0: any free port); with `--workers`, worker 0 owns it and its `/metrics` has"
        " every worker's series",
    )


class CallbackSettings(_Section):
    """The receiver of Hive async task callbacks (used for videos)."""

    host: str = Field(
        default="0.0.0.0",  # nosec B104  # listens on the pod's interfaces by design (probes, scrapes, callbacks); set host to narrow
        description="the address the callback receiver listens on",
    )
    port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="its port (0: any free port); it serves `/metrics` too",
    )
    public_url: str | None = Field(
        default=None,
        description="the base URL providers call back (your ingress or Service), e.g."
        " `https://moderation.example.com`; unset: `http://<host>:<port>`",
    )
    token: SecretStr | None = Field(
        default=None,
        description="the secret in the callback path (`/callbacks/<token>`); give every process the same one"
        " (unset: random per process)",
    )
    token_file: Path | None = Field(
        default=None,
        description="a file holding `token`; read at start (callback URLs already handed out carry it)",
    )
    poll_after_s: float = Field(
        default=30.0,
        gt=0,
        description="no callback by then: poll the task (`GET /api/v1/task/{id}`)",
    )
    poll_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="then poll this often until the task ends",
    )
    deadline_s: float = Field(
        default=300.0,
        gt=0,
        description="an async check unfinished by then fails closed (`check_unavailable`)",
    )

    @model_validator(mode="after")
    def _token_from_file(self) -> CallbackSettings:
        _secret_from_file(self, "token")
        return self


class LimitSettings(_Section):
    """Etiquette per check (each check gets its own limiter and breaker with these settings)."""

    initial_concurrency: int = Field(
        default=16,
        ge=1,
        description="calls in flight per check at start (the adaptive AIMD limit: +1 per window while"
        " latency holds, halved on 429, 503 and timeouts)",
    )
    max_concurrency: int = Field(
        default=256,
        ge=1,
        description="the adaptive concurrency limit's ceiling per check",
    )
    min_concurrency: int = Field(
        default=1,
        ge=1,
        description="the adaptive concurrency limit's floor per check",
    )
    rate_per_s: dict[str, float] = Field(
        default_factory=dict,
        description='a token-bucket rate per check, e.g. `{"visual": 50}` (unlisted checks: no rate limit)',
    )
    breaker_threshold: int = Field(
        default=5,
        ge=1,
        description="consecutive failures that open a check's circuit (nothing new starts and intake is held"
        " until a probe succeeds)",
    )
    breaker_cooldown_s: float = Field(
        default=5.0,
        gt=0,
        description="how long a circuit stays open before a probe call is let through",
    )


class ProcessingSettings(_Section):
    """How records flow: the delivery mode, bounds on input records, ordering, concurrency and
    backpressure, retries and deadlines, and which checks run."""

    delivery: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="`at_least_once`: an input offset is committed after its outputs are acknowledged;"
        " `exactly_once`: verdicts, dead letters and input offsets in one transaction per interval (read"
        " verdicts with `isolation.level=read_committed`)",
    )
    transaction_interval_ms: int = Field(
        default=100,
        ge=10,
        le=60_000,
        description="`exactly_once`: how often the open transaction commits",
    )
    max_record_bytes: int = Field(
        default=1 << 20,
        ge=1,
        description="input records larger than this (key, value and headers) are dead letters",
    )
    max_header_count: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="input records with more headers are dead letters that keep none of them",
    )
    max_header_bytes: int = Field(
        default=64 << 10,
        ge=0,
        description="input records whose headers (names and values) weigh more are dead letters that keep"
        " none of them",
    )
    dead_letter_refused: bool = Field(
        default=True,
        description="content a provider refuses (corrupt, too small, unsupported) is a dead letter unless"
        " another check blocks or escalates it; false: a REVIEW verdict with `check_rejected:<check>`",
    )
    stall_after_s: float = Field(
        default=120.0,
        gt=0,
        description="a partition whose oldest unfinished record is older, or whose position has not moved"
        " for this long while records wait on it, is stalled: logged, counted"
        " (`moderation_partition_stalls_total`) and `/readyz` answers 503",
    )
    ordering: Mode = Field(
        default=Mode.KEY,
        description="`KEY`: records of one key in offset order, different keys in parallel (even within a"
        " partition); `PARTITION`: one record at a time per partition; `UNORDERED`",
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="records processed concurrently (the provider connection pool is sized from it)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the event loop: `uvloop` (less CPU per upload) or `asyncio`",
    )
    max_in_flight_bytes: int = Field(
        default=64 << 20,
        ge=1,
        description="bytes of records processed concurrently (one record may always run)",
    )
    partition_buffer: int = Field(
        default=500,
        ge=1,
        description="waiting records that pause a partition; it resumes at half",
    )
    max_buffered_bytes: int = Field(
        default=128 << 20,
        ge=1,
        description="waiting bytes that pause every partition until half is drained",
    )
    revoke_drain_s: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="on revocation, how long in-flight work of those partitions may finish before the final"
        " commit",
    )
    max_poll_records: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="records taken per poll of the consumer",
    )
    inline_media_limit_bytes: int = Field(
        default=1_000_000,
        ge=0,
        description="larger inline media are dead letters (send a URL instead)",
    )
    retry_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="HTTP attempts per provider call (transient errors only)",
    )
    retry_base_delay_s: float = Field(
        default=0.1,
        ge=0,
        le=60,
        description="the first retry's backoff (full-jitter, exponential; `Retry-After` honoured)",
    )
    retry_max_delay_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="the longest backoff between retries",
    )
    check_deadline_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a check unfinished by then is `check_unavailable` (fail closed: REVIEW)",
    )
    drain_timeout_s: float = Field(
        default=25.0,
        ge=0,
        le=3600,
        description="on SIGTERM, how long in-flight work may finish before the final commit (keep it below"
        " the pod's termination grace period)",
    )
    result_cache_size: int = Field(
        default=10_000,
        ge=0,
        le=10_000_000,
        description="check results cached by (tenant, sha256 of the content); 0: no cache",
    )
    similarity: Literal["hive", "huawei", "none"] = Field(
        default="hive",
        description="the similarity check's provider: `hive` (custom index), `huawei` (ImageSearch, the"
        " tenant as a tag) or `none`",
    )
    checks: list[CheckName] = Field(
        default_factory=lambda: ["csam", "visual", "text", "similarity"],
        description="the registered checks that run; an unknown name stops the start; `[]` measures the"
        " framework alone (a warning is logged whenever no hash-matching check runs)",
    )
    async_media: list[AsyncMedia] = Field(
        default_factory=lambda: list[AsyncMedia](["VIDEO"]),
        description="media types checked through async tasks and callbacks",
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


def read_secret_file(path: Path) -> str:
    """The secret a ``*_file`` setting's file holds (``core.secrets.secret_text``: bounded, one
    trailing line break dropped, no control characters, not empty); OSError or UnreadableFile."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise UnreadableFile("not a regular file")
    with path.open("rb") as f:
        data = f.read(MAX_SECRET_FILE_BYTES + 1)
    return secret_text(data)


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
        value = read_secret_file(path)
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
