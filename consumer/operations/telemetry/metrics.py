"""Prometheus metrics (prefix ``moderation_``, base units, low-cardinality labels)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "ASSIGNED",
    "CALLBACKS",
    "CALLBACK_DELIVERIES",
    "CHECK_DURATION",
    "CIRCUIT_STATE",
    "CONCURRENCY_LIMIT",
    "DEAD_LETTERS",
    "INDEX_UPDATES",
    "INTAKE_HELD",
    "IN_FLIGHT",
    "IN_FLIGHT_BYTES",
    "PAUSED",
    "PENDING_TASKS",
    "PROVIDER_DURATION",
    "PROVIDER_REQUESTS",
    "REBALANCES",
    "REGISTRY",
    "RETRIES",
    "STALLED",
    "STALLS",
    "TASK_POLLS",
    "TRANSACTIONS",
    "VERDICTS",
    "child",
]

REGISTRY = CollectorRegistry(auto_describe=True)

VERDICTS = Counter(
    "moderation_verdicts_total", "Verdicts produced, by decision.", ["decision"], registry=REGISTRY
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
    "Relayed callbacks by what they did here: completed, duplicate, early, unknown.",
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

IN_FLIGHT = Gauge(
    "moderation_in_flight_records", "Records being processed (bounded by max_in_flight).", registry=REGISTRY
)
IN_FLIGHT_BYTES = Gauge("moderation_in_flight_bytes", "Bytes of records being processed.", registry=REGISTRY)
PAUSED = Gauge(
    "moderation_paused_partitions", "Partitions paused because their buffer is full.", registry=REGISTRY
)
ASSIGNED = Gauge("moderation_assigned_partitions", "Partitions assigned to this process.", registry=REGISTRY)
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
    "moderation_rebalances_total", "Partition revocations and losses handled.", registry=REGISTRY
)
PROVIDER_REQUESTS = Counter(
    "moderation_provider_requests_total",
    "HTTP attempts to providers by check and outcome (ok, overload, failure).",
    ["check", "outcome"],
    registry=REGISTRY,
)
PROVIDER_DURATION = Histogram(
    "moderation_provider_request_duration_seconds",
    "One HTTP attempt to a provider.",
    ["check"],
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


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoised: the hot path counts per record and per call, and
    ``labels()`` validates and locks on every use."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found
