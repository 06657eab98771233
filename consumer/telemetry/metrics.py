"""Prometheus metrics (prefix ``moderation_``, base units, low-cardinality labels: never an
upload, user or tenant id), with the process and Python runtime collectors on the same registry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from consumer import __version__
from consumer.core.records import MediaType

__all__ = [
    "ASSIGNED",
    "BUILD_INFO",
    "CALLBACKS",
    "CALLBACK_DELIVERIES",
    "CHECK_DURATION",
    "CIRCUIT_STATE",
    "CONCURRENCY_LIMIT",
    "CONSUMER_LAG",
    "CONSUMER_LAG_SECONDS",
    "DEAD_LETTERS",
    "END_TO_END_BUCKETS",
    "END_TO_END_LATENCY",
    "FAIL_CLOSED",
    "INDEX_UPDATES",
    "INTAKE_HELD",
    "IN_FLIGHT",
    "IN_FLIGHT_BYTES",
    "PAUSED",
    "PENDING_TASKS",
    "POLICY_INFO",
    "POLICY_RELOADS",
    "PROVIDER_DURATION",
    "PROVIDER_REQUESTS",
    "REBALANCES",
    "REGISTRY",
    "RETRIES",
    "SECRET_RELOADS",
    "SHADOW_DECISIONS",
    "STALLED",
    "STALLS",
    "TASK_POLLS",
    "TRANSACTIONS",
    "UPLOADS_APPENDED",
    "VERDICTS",
    "WAITING",
    "child",
    "count_request",
    "set_partitions",
    "status_class",
]

# No ``*_created`` series: they double the counters' series and nothing reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)  # python_info
GCCollector(registry=REGISTRY)  # python_gc_*
BUILD_INFO = Info("moderation_build", "The running build.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

VERDICTS = Counter(
    "moderation_verdicts_total", "Verdicts produced, by decision.", ["decision"], registry=REGISTRY
)
FAIL_CLOSED = Counter(
    "moderation_fail_closed_verdicts_total",
    "Verdicts with a check_unavailable reason: a check could not answer, the upload failed closed.",
    registry=REGISTRY,
)
# A latency objective ("99 % of verdicts within N s", the chart's monitoring.prometheusRule.latencyObjective)
# is computed from the bucket at N: N must be one of these.
END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900, 1800, 3600)
END_TO_END_LATENCY = Histogram(
    "moderation_end_to_end_latency_seconds",
    "From the upload's created_at to its verdict acknowledged by the broker, by media type.",
    ["media_type"],
    buckets=END_TO_END_BUCKETS,
    registry=REGISTRY,
)
CHECK_DURATION = Histogram(
    "moderation_check_duration_seconds",
    "Wall time of one check including retries.",
    ["check", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
INTAKE_HELD = Gauge(
    "moderation_intake_held",
    "1 while an open provider circuit holds intake (records wait; none fail).",
    registry=REGISTRY,
)
CALLBACKS = Counter(
    "moderation_callbacks_received_total",
    "Async task callbacks received over HTTP.",
    ["outcome"],
    registry=REGISTRY,
)
CALLBACK_DELIVERIES = Counter(
    "moderation_callback_deliveries_total",
    "Relayed callbacks by what they did here: completed, duplicate, early, unknown, forged (unsigned).",
    ["outcome"],
    registry=REGISTRY,
)
TASK_POLLS = Counter(
    "moderation_task_polls_total", "Async tasks polled because no callback came in time.", registry=REGISTRY
)
INDEX_UPDATES = Counter(
    "moderation_index_updates_total",
    "Similarity index maintenance, by operation and outcome.",
    ["operation", "outcome"],
    registry=REGISTRY,
)
PENDING_TASKS = Gauge(
    "moderation_async_tasks_pending", "Async tasks waiting for a callback.", registry=REGISTRY
)
POLICY_RELOADS = Counter(
    "moderation_policy_reloads_total",
    "Policy file reloads (file change or SIGHUP), by outcome: applied, refused (invalid: the old"
    " policy stays), unchanged (same rules).",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("applied", "refused", "unchanged"):  # at 0 from the start: a rate needs a series
    POLICY_RELOADS.labels(_outcome)
SECRET_RELOADS = Counter(
    "moderation_secret_reloads_total",
    "Secret file reads after start (file change or SIGHUP), by setting (e.g. hive.visual_key) and"
    " outcome: applied (the next call uses it), refused (unreadable, empty or not a valid secret: the"
    " old value stays), unchanged (the same value).",
    ["setting", "outcome"],
    registry=REGISTRY,
)
POLICY_INFO = Info(
    "moderation_policy",
    "The policies in force: version and digest (sha256, 12 hex) of the live and the shadow policy file.",
    ["role"],
    registry=REGISTRY,
)
SHADOW_DECISIONS = Counter(
    "moderation_shadow_decisions_total",
    "Verdicts also decided by the shadow policy, by (live decision, shadow decision); off the"
    " diagonal: a disagreement, written to the shadow topic.",
    ["live", "shadow"],
    registry=REGISTRY,
)

IN_FLIGHT = Gauge(
    "moderation_in_flight_records", "Records being processed (bounded by max_in_flight).", registry=REGISTRY
)
IN_FLIGHT_BYTES = Gauge("moderation_in_flight_bytes", "Bytes of records being processed.", registry=REGISTRY)
PAUSED = Gauge(
    "moderation_paused_partitions", "Partitions paused because their buffer is full.", registry=REGISTRY
)
ASSIGNED = Gauge("moderation_assigned_partitions", "Partitions assigned to this process.", registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "moderation_consumer_lag_records",
    "Per assigned partition: its log end (last stable offset) minus this process's committed offset.",
    ["topic", "partition"],
    registry=REGISTRY,
)
CONSUMER_LAG_SECONDS = Gauge(
    "moderation_consumer_lag_seconds",
    "Per assigned partition: the age (now minus its Kafka timestamp) of the oldest record this process"
    " holds unfinished (waiting or running); 0 when it holds none. Every 5 s.",
    ["topic", "partition"],
    registry=REGISTRY,
)
UPLOADS_APPENDED = Counter(
    "moderation_uploads_appended_total",
    "Records appended to the input topic's partitions assigned to this process, from their log end"
    " offsets every 5 s (transaction markers included): uploads arriving, whether or not consumed.",
    registry=REGISTRY,
)
WAITING = Gauge(
    "moderation_partition_waiting_records",
    "Per assigned partition: records received and waiting to start (the scheduler's buffer).",
    ["topic", "partition"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "moderation_dead_letters_total",
    "Input records written to the dead letter topic, by error class.",
    ["error_class"],
    registry=REGISTRY,
)
STALLS = Counter(
    "moderation_partition_stalls_total",
    "Partitions whose oldest in-flight record passed the stall deadline.",
    registry=REGISTRY,
)
STALLED = Gauge("moderation_stalled_partitions", "Partitions stalled right now.", registry=REGISTRY)
TRANSACTIONS = Counter(
    "moderation_transactions_total",
    "exactly_once transactions by outcome (committed, aborted, producer_rebuilt).",
    ["outcome"],
    registry=REGISTRY,
)
REBALANCES = Counter(
    "moderation_rebalances_total",
    "Rebalance events handled, by kind: assigned, revoked, lost.",
    ["kind"],
    registry=REGISTRY,
)
PROVIDER_REQUESTS = Counter(
    "moderation_provider_requests_total",
    "HTTP attempts to providers by provider, check and status class (2xx, 3xx, 4xx, 429, 5xx, "
    "timeout, error: no answer).",
    ["provider", "check", "status_class"],
    registry=REGISTRY,
)
PROVIDER_DURATION = Histogram(
    "moderation_provider_request_duration_seconds",
    "One HTTP attempt to a provider.",
    ["provider", "check"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
RETRIES = Counter(
    "moderation_provider_retries_total",
    "Retries of provider calls, by check and reason.",
    ["check", "reason"],
    registry=REGISTRY,
)
CONCURRENCY_LIMIT = Gauge(
    "moderation_provider_concurrency_limit",
    "Current adaptive concurrency limit per check.",
    ["check"],
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "moderation_provider_circuit_state",
    "Circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["check"],
    registry=REGISTRY,
)


for _kind in ("assigned", "revoked", "lost"):
    REBALANCES.labels(_kind)
for _outcome in ("committed", "aborted", "producer_rebuilt"):
    TRANSACTIONS.labels(_outcome)
for _decision in ("ALLOW", "REVIEW", "BLOCK", "ESCALATE"):
    VERDICTS.labels(_decision)
# every media type's latency series from the start: a series born at its first observation loses
# that increase to rate(), and a burst finished within one scrape would leave the SLI empty
for _media in MediaType:
    END_TO_END_LATENCY.labels(_media.value)

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoised: the hot path counts per record and per call, and
    ``labels()`` validates and locks on every use."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


# the vendor names the clients use, as the label the dashboards filter by
_PROVIDERS = {"Hive": "hive", "ImageSearch": "huawei", "Huawei": "huawei"}
_requests: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}


def status_class(status: int, outcome: str) -> str:
    """``2xx`` .. ``5xx``, ``429`` on its own, and for no answer at all (``status`` 0) ``timeout``
    (``outcome`` overload) or ``error`` (the connection failed)."""
    if status == 0:
        return "timeout" if outcome == "overload" else "error"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def count_request(provider: str, check: str, status: int, outcome: str, elapsed: float) -> None:
    """One HTTP attempt to a provider: counted and timed (one dict lookup on the hot path)."""
    key = (provider, check, status, outcome)
    found = _requests.get(key)
    if found is None:
        name = _PROVIDERS.get(provider, provider.lower())
        found = _requests[key] = (
            PROVIDER_REQUESTS.labels(name, check, status_class(status, outcome)),
            PROVIDER_DURATION.labels(name, check),
        )
    found[0].inc()
    found[1].observe(elapsed)


def set_partitions(
    gauge: Gauge, values: Mapping[tuple[str, int], float], shown: Iterable[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Per-partition ``gauge`` := ``values``; the series of partitions in ``shown`` (set last time)
    but no longer in ``values`` are removed. Returns what is shown now."""
    for (topic, partition), value in values.items():
        gauge.labels(topic, str(partition)).set(value)
    for topic, partition in set(shown) - set(values):
        with contextlib.suppress(KeyError):
            gauge.remove(topic, str(partition))
    return set(values)
