"""``bench.latency``'s arithmetic: the provider chain, percentiles, recovery (pure: no broker)."""

from __future__ import annotations

from pathlib import Path

from bench.latency import Sample, chain_ms, chart, intake_gauges, percentiles, recovery


def test_chain_is_csam_then_the_longer_of_the_rest() -> None:
    checks = [
        {"check": "csam", "latency_ms": 40.0},
        {"check": "visual", "latency_ms": 70.0},
        {"check": "similarity", "latency_ms": 55.0},
    ]
    assert chain_ms(checks) == 110.0
    assert chain_ms([{"check": "visual", "latency_ms": 12.5}]) == 12.5
    assert chain_ms([]) == 0.0


def test_added_is_end_to_end_minus_the_chain() -> None:
    assert Sample(produced_ms=0, e2e_ms=150, chain_ms=140.5, failed_closed=False).added_ms == 9.5


def test_percentiles_of_nothing_and_of_a_hundred() -> None:
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    figures = percentiles([float(v) for v in range(1, 101)])
    assert figures == {"p50": 51.0, "p95": 96.0, "p99": 100.0, "max": 100.0}


def samples(start_ms: int, seconds: int, added_ms: float, per_s: int = 10) -> list[Sample]:
    return [
        Sample(start_ms + i * 1000 // per_s, int(100 + added_ms), 100.0, False)
        for i in range(seconds * per_s)
    ]


def test_recovery_is_the_first_of_two_windows_in_a_row_under_the_target() -> None:
    ended_s = 1000.0
    backlog = samples(990_000, 10, 20_000.0)  # produced during the outage: waited
    draining = samples(1_000_000, 10, 500.0)  # the first 10 s after: behind the backlog
    noisy = samples(1_010_000, 5, 5.0) + samples(1_015_000, 5, 30.0)  # one quiet window, then not
    steady = samples(1_020_000, 20, 5.0)
    result = recovery(backlog + draining + noisy + steady, ended_s, target_ms=10.0)
    assert result["back_under_target_s"] == 20.0
    assert result["backlog_drained_s"] == 20.0  # the last held upload (999.9 s) plus its 20.1 s wait
    assert [w for w, _ in result["windows_p99_added_ms"]][:3] == [0.0, 5.0, 10.0]


def test_recovery_never_back_says_so() -> None:
    result = recovery(samples(1_000_000, 20, 500.0), 1000.0, target_ms=10.0)
    assert result["back_under_target_s"] is None


def test_chart_draws_a_png(tmp_path: Path) -> None:
    row = {"p50": 3.0, "p95": 8.0, "p99": 15.0, "max": 40.0}
    results = {
        "capacity_per_s": 200.0,
        "loads": {
            f"{p}%": {"load": p / 100, "end_to_end_ms": row, "added_ms": row} for p in (25, 50, 75, 90)
        },
    }
    drawn = chart(results, tmp_path / "latency.png")
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_scrape_takes_the_two_gauges_and_skips_what_does_not_parse() -> None:
    body = (
        b"# HELP moderation_intake_held held\nmoderation_intake_held 1.0\n"
        b"moderation_in_flight_records NaNx\nmoderation_in_flight_records\n\xff\xfe garbage\n"
        b"moderation_in_flight_records_total 9\n" + b"x" * 10_000
    )
    assert intake_gauges(body) == {"moderation_intake_held": 1.0}
    assert intake_gauges(b"moderation_in_flight_records 24.0 1700000000\n") == {
        "moderation_in_flight_records": 24.0
    }
