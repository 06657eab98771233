"""``bench.workers.sizing``: the arithmetic of scaling out, on paper (pure: no broker, no processes)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.workers import sizing, sizing_table
from consumer.wiring import CONNECTIONS_PER_RECORD

# 2 ms of CPU an upload: one worker does 500/s at a whole core, 300/s at the 0.6 headroom
FIGURES: dict[str, Any] = {"cpu_ms_per_upload": 2.0, "chain_p99_s": 0.33}


def size(rate: float, **options: Any) -> dict[str, Any]:
    return sizing(rate, **{**FIGURES, **options})


def test_cores_are_cpu_per_upload_times_the_rate_over_the_headroom() -> None:
    assert size(1_000)["cores"] == pytest.approx(1_000 * 0.002 / 0.6, abs=0.01)
    assert size(1_000, per_core_headroom=1.0)["cores"] == pytest.approx(2.0)


def test_one_worker_per_pod_at_least_the_cores_and_never_fewer_than_two_pods() -> None:
    small = size(100)
    assert small["cores"] < 1
    assert small["pods"] == 2 and small["workers"] == 2  # one pod restarting does not stop moderation
    assert size(100, min_pods=1)["pods"] == 1
    big = size(1_000)
    assert big["pods"] >= math.ceil(big["cores"])
    assert big["workers"] == big["pods"] * big["workers_per_pod"]
    two_cores = size(1_000, cores_per_pod=2)
    assert two_cores["workers_per_pod"] == 2 and two_cores["workers"] == 2 * two_cores["pods"]


def test_in_flight_is_littles_law_on_the_chains_p99_the_mean_beside_it() -> None:
    s = sizing(1_000, cpu_ms_per_upload=2.0, chain_p99_s=0.33, chain_mean_s=0.14)
    assert s["in_flight"] == 330 and s["in_flight_basis"] == "p99"
    assert s["in_flight_mean"] == 140
    assert size(1_000)["in_flight_mean"] is None


def test_a_workers_in_flight_setting_covers_a_whole_core_not_just_its_share() -> None:
    s = size(10_000)
    assert s["in_flight_per_worker"] == math.ceil(500 * 0.33)  # 1000 / 2 ms a second, times the p99
    assert s["in_flight_per_worker"] * s["workers"] >= s["in_flight"]


def test_provider_connections_follow_the_consumers_pool_rule() -> None:
    s = size(1_000)
    assert CONNECTIONS_PER_RECORD == 2
    assert s["provider_connections"] == 2 * s["in_flight"]
    assert s["provider_connections_per_worker"] == 2 * s["in_flight_per_worker"]
    assert s["provider_connections_max"] == s["provider_connections_per_worker"] * s["workers"]
    assert size(1_000, provider_connections_per_in_flight=1)["provider_connections"] == 330
    assert s["provider_calls_per_s"] == 3_000
    assert size(1_000, calls_per_upload=2)["provider_calls_per_s"] == 2_000


@pytest.mark.parametrize("rate", [100, 500, 1_000, 5_000, 10_000, 33_333])
def test_partitions_cover_every_worker_stay_under_the_ceiling_in_multiples_of_twelve(rate: int) -> None:
    s = size(rate)
    assert s["partitions"] % 12 == 0
    assert s["partitions"] >= s["workers"]
    assert s["per_partition_rate"] <= s["per_partition_ceiling"]
    # the busiest worker (it holds ceil(partitions / workers) of them) fits in its core's headroom
    assert s["busiest_worker_rate"] <= s["worker_rate"] == pytest.approx(300)
    assert s["busiest_worker_rate"] == pytest.approx(
        math.ceil(s["partitions"] / s["workers"]) * rate / s["partitions"], abs=0.1
    )


def test_uneven_partitions_add_pods_until_the_busiest_worker_fits() -> None:
    # 5,000/s: 16.7 cores, 36 partitions of 139/s; 17 workers would leave one holding 3 (417/s)
    s = size(5_000)
    assert math.ceil(s["cores"]) == 17
    assert s["partitions"] == 36 and s["pods"] == 18


def test_the_per_partition_ceiling_is_stated_and_never_above_a_worker() -> None:
    assert size(1_000)["per_partition_ceiling"] == pytest.approx(150)  # half a worker
    stated = size(1_000, per_partition_ceiling=20)
    assert stated["per_partition_ceiling"] == 20 and stated["partitions"] == 60
    assert size(1_000, per_partition_ceiling=10_000)["per_partition_ceiling"] == pytest.approx(300)
    assert size(1_000, partition_multiple=1)["partitions"] == 7  # 1000 / 150, rounded up


def test_memory_from_a_workers_peak_rss() -> None:
    s = size(1_000, peak_rss_mb_per_worker=150.0)
    assert s["memory_mb"] == 150.0 * s["workers"]
    assert "memory_mb" not in size(1_000)


@pytest.mark.parametrize(
    "bad",
    [
        {"uploads_per_s": 0},
        {"cpu_ms_per_upload": 0},
        {"chain_p99_s": -1},
        {"per_core_headroom": 0},
        {"per_core_headroom": 1.5},
        {"min_pods": 0},
        {"per_partition_ceiling": 0},
    ],
)
def test_nonsense_is_refused(bad: dict[str, float]) -> None:
    options = dict(bad)
    rate = options.pop("uploads_per_s", 1_000)
    with pytest.raises(ValueError):
        size(rate, **options)


def test_the_table_has_a_row_per_target_from_the_measured_summary() -> None:
    summary = {"sizing_inputs": {**FIGURES, "chain_mean_s": 0.14, "peak_rss_mb_per_worker": None}}
    text = sizing_table(summary)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 100", "| 500", "| 1,000", "| 5,000", "| 10,000"]
    assert "| 10,000 | 33.33 | 36 | 3,300 (1,400) |" in text
    assert sizing_table(FIGURES, targets=[42]).count("\n| 42 |") == 1
