"""Header bytes are not free (issue 22, "every byte counts"), on the real broker: uploads carrying
about 900 KB of headers each, waiting on a slow provider, stay within the byte bounds (headers count
in every one), so the process's peak memory stays bounded; under the default caps such records are
dead letters that keep none of their headers and record their count and size. Every record ends as
exactly one verdict or one dead letter, offsets commit, ``/healthz`` answers throughout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Message

from consumer.core.headers import CUT_COUNT, CUT_SIZE
from consumer.core.records import MediaType, UploadEvent
from moderation_devtools.broker import free_port
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    produce_uploads,
    upload,
    wait_until,
)

from .conftest import Topics
from .test_hostile import HealthWatch, Outcomes, _committed_to_end, _peak_rss_mb

pytestmark = pytest.mark.integration

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# nine headers of 100 KB, and a traceparent: about 900 KB, under the producer's and the broker's
# 1 MB record limit with the upload itself
BLOATED: list[tuple[str, str | bytes | None]] = [
    ("traceparent", TRACEPARENT),
    *((f"x-bloat-{i}", bytes([65 + i]) * 100_000) for i in range(9)),
]
BLOATED_BYTES = sum(len(k) + len(v or b"") for k, v in BLOATED)
MANY: list[tuple[str, str | bytes | None]] = [(f"x-{i}", b"") for i in range(2_000)]


class LetterHeaders(Outcomes):
    """Outcomes, and each dead letter's headers by the input offset it answers."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        super().__init__(bootstrap, topics)
        self.letter_headers: dict[tuple[int, int], dict[str, bytes]] = {}

    def handle(self, msg: Message) -> None:
        super().handle(msg)
        if msg.topic() == self._dlq:
            headers: dict[str, bytes] = {}
            for name, value in msg.headers() or []:
                headers[name] = value if isinstance(value, bytes) else (value or "").encode()
            where = (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
            self.letter_headers[where] = headers


def run_consumer(
    bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    log_dir: Path,
    records: int,
    partitions: int = 1,
    **settings: str,
) -> tuple[LetterHeaders, float]:
    """Run ``python -m consumer run`` until every record is answered and committed; its outcomes and
    peak RSS (MB)."""
    health_port = free_port()
    env = consumer_env(
        bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_HEALTH__PORT=str(health_port),
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_KAFKA__COMMIT_INTERVAL_MS="100",
        MODERATION_PROCESSING__MAX_BUFFERED_BYTES=str(8 << 20),
        MODERATION_PROCESSING__MAX_IN_FLIGHT_BYTES=str(4 << 20),
        **settings,
    )
    service = ConsumerProcess(env, log_path=log_dir / "consumer.log").start()
    assert service.process is not None
    try:
        with (
            LetterHeaders(bootstrap, topics) as outcomes,
            HealthWatch(f"http://127.0.0.1:{health_port}/healthz") as health,
        ):
            assert wait_until(lambda: health.answering or not service.alive, 60), "no /healthz answer"
            answered = outcomes.answered(records)
            assert wait_until(lambda: answered() or not service.alive, 240), "not every record was answered"
            assert service.alive, "the service exited"
            assert wait_until(_committed_to_end(bootstrap, topics.input, topics.group, partitions), 60), (
                "not committed"
            )
            assert service.alive, "the service exited"
            peak = _peak_rss_mb(service.process.pid)
        assert health.asked > 0 and not health.failures, f"/healthz did not answer: {health.failures[:5]}"
    finally:
        assert service.terminate(60) == 0
    assert all(len(found) == 1 for found in outcomes.by_offset.values()), "a record was answered twice"
    return outcomes, peak


def test_bloated_headers_waiting_on_a_slow_provider_stay_within_the_byte_bounds(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    log_dir: Path,
    accounting: Callable[[str], None],
) -> None:
    """The attack of issue 22 at most of its size: 500 uploads with about 900 KB of headers each
    (450 MB) on four partitions, caps raised so they are moderated, a slow provider, byte bounds of
    8 MiB waiting and 4 MiB in flight, and librdkafka's prefetch lowered to 16 MiB (its default,
    64 MiB, is a buffer beside ours). Headers uncounted, nearly every record was read and held at
    once: a peak over 600 MB with 400 uploads, growing with their number. Counted, the peak
    measured 236-294 MB with 300-500 uploads, once 390 (some 110 MB of it the idle process; the
    rest the bounds, librdkafka's buffers and the allocator's fragments)."""
    topics = make_topics(input_partitions=4)
    sim.admin("/_admin/latency", json={"median_ms": 200, "p99_ms": 400})
    uploads = [upload(MediaType.TEXT, upload_id=f"bloat-{i}", text=f"hello {i}") for i in range(500)]
    produce_uploads(kafka_bootstrap, topics.input, uploads, headers=BLOATED)
    outcomes, peak = run_consumer(
        kafka_bootstrap,
        topics,
        sim,
        log_dir,
        len(uploads),
        partitions=4,
        MODERATION_PROCESSING__MAX_HEADER_BYTES=str(1 << 20),
        MODERATION_KAFKA__CLIENT_CONFIG='{"queued.max.messages.kbytes": "16384"}',
    )
    kinds = [found[0].kind for found in outcomes.by_offset.values()]
    assert kinds == ["verdict"] * len(uploads), {k: kinds.count(k) for k in set(kinds)}
    accounting(
        f"accounting: uploads={len(uploads)} header_bytes_each={BLOATED_BYTES} verdicts={len(uploads)}"
        f" dead_letters=0 duplicates=0 missing=0 peak_rss_mb={peak:.0f}"
    )
    assert peak < 450, f"peak RSS {peak:.0f} MB: header bytes escaped the byte bounds"


def test_records_over_the_header_caps_are_dead_letters_without_their_headers(
    kafka_bootstrap: str,
    make_topics: Callable[..., Topics],
    sim: SimulatorProcess,
    log_dir: Path,
    accounting: Callable[[str], None],
) -> None:
    """Default caps (64 headers, 64 KiB): bloated records and records of 2,000 empty headers are
    dead letters carrying none of the input's headers (not even its traceparent) but their count
    and size; the uploads between them get their verdicts."""
    topics = make_topics(input_partitions=1)
    sim.admin("/_admin/latency", json={"median_ms": 50, "p99_ms": 100})

    def text(name: str) -> UploadEvent:
        return upload(MediaType.TEXT, upload_id=name, text=name)

    expected: dict[int, tuple[str, int, int] | None] = {}  # offset -> (kind, count, size) or a verdict
    for i in range(20):
        kind, headers = ("bytes", BLOATED) if i % 2 == 0 else ("count", MANY)
        size = sum(len(k) + len(v or b"") for k, v in headers)
        produce_uploads(kafka_bootstrap, topics.input, [text(f"capped-{i}")], headers=headers)
        expected[2 * i] = (kind, len(headers), size)
        produce_uploads(
            kafka_bootstrap, topics.input, [text(f"fine-{i}")], headers=[("traceparent", TRACEPARENT)]
        )
        expected[2 * i + 1] = None
    outcomes, peak = run_consumer(kafka_bootstrap, topics, sim, log_dir, len(expected))
    for offset, want in expected.items():
        (found,) = outcomes.by_offset[(0, offset)]
        if want is None:
            assert found.kind == "verdict", (offset, found)
            continue
        assert (found.kind, found.what) == ("dead_letter", "InvalidRecordError"), (offset, found)
        _, count, size = want
        assert f"{count} headers of {size} bytes" in found.detail and "at most 64 headers" in found.detail
        on_letter = outcomes.letter_headers[(0, offset)]
        assert on_letter[CUT_COUNT] == str(count).encode() and on_letter[CUT_SIZE] == str(size).encode()
        assert not any(n.startswith("x-") or n == "traceparent" for n in on_letter), sorted(on_letter)
    letters = sum(v is not None for v in expected.values())
    accounting(
        f"accounting: uploads={len(expected)} verdicts={len(expected) - letters} dead_letters={letters}"
        f" duplicates=0 missing=0 peak_rss_mb={peak:.0f}"
    )
    assert peak < 300, f"peak RSS {peak:.0f} MB"
