"""``consumer.kafka.scan`` on the real broker: one pass over chosen partitions from chosen offsets up
to the ends they had when the pass started (records written meanwhile are not chased), read
committed (an aborted transaction's records are skipped, and its markers do not keep the pass
waiting), and no group offsets committed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.config import KafkaSettings, load_settings
from consumer.errors import BrokerError
from consumer.kafka.scan import IDLE_S, Offsets, scan

from .conftest import Topics

pytestmark = pytest.mark.integration
PARTITIONS = 2


def kafka_settings(bootstrap: str, group: str) -> KafkaSettings:
    return load_settings(kafka={"bootstrap_servers": bootstrap, "group_id": group}).kafka


def produce(
    bootstrap: str, topic: str, records: list[tuple[int, bytes]], transaction: str | None = None
) -> None:
    """``records`` (partition, value) acknowledged; ``transaction``: "commit" or "abort" them as one."""
    config = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
    if transaction is not None:
        config["transactional.id"] = f"scan-test-{uuid.uuid4().hex[:8]}"
    producer = Producer(config)
    if transaction is not None:
        producer.init_transactions(30)
        producer.begin_transaction()
    for partition, value in records:
        producer.produce(topic, value=value, partition=partition)
    if transaction == "commit":
        producer.commit_transaction(30)
    elif transaction == "abort":
        producer.flush(30)
        producer.abort_transaction(30)
    assert producer.flush(30) == 0


def from_the_start(offsets: Offsets, partitions: list[int]) -> dict[int, tuple[int, int]]:
    return {p: offsets.watermarks(p) for p in partitions}


def values(settings: KafkaSettings, topic: str, partition: int | None = None) -> list[tuple[int, bytes]]:
    with scan(settings, topic, "test", from_the_start, partition) as records:
        return [(m.partition() or 0, m.value() or b"") for m in records]


@pytest.fixture
def topic(make_topics: Callable[..., Topics]) -> str:
    return make_topics(input_partitions=PARTITIONS, other_partitions=1).input


def test_a_pass_reads_every_chosen_record_once_in_partition_order(kafka_bootstrap: str, topic: str) -> None:
    written = [(i % PARTITIONS, f"r{i}".encode()) for i in range(20)]
    produce(kafka_bootstrap, topic, written)
    settings = kafka_settings(kafka_bootstrap, f"scan-{uuid.uuid4().hex[:8]}")
    read = values(settings, topic)
    assert sorted(read) == sorted(written)
    for p in range(PARTITIONS):
        assert [v for q, v in read if q == p] == [v for q, v in written if q == p]
    assert values(settings, topic, partition=1) == [(1, v) for q, v in written if q == 1]
    # nothing committed for the tool's group
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{settings.group_id}.test"})
    try:
        committed = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        assert all(tp.offset < 0 for tp in committed)
    finally:
        probe.close()


def test_records_written_during_the_pass_are_not_chased(kafka_bootstrap: str, topic: str) -> None:
    produce(kafka_bootstrap, topic, [(0, b"before-1"), (0, b"before-2")])
    settings = kafka_settings(kafka_bootstrap, f"scan-{uuid.uuid4().hex[:8]}")
    read: list[bytes] = []
    with scan(settings, topic, "test", from_the_start, 0) as records:
        for msg in records:
            read.append(msg.value() or b"")
            if len(read) == 1:
                produce(kafka_bootstrap, topic, [(0, b"during")])
    assert read == [b"before-1", b"before-2"]


def test_chosen_offsets_bound_the_pass_and_an_empty_range_reads_nothing(
    kafka_bootstrap: str, topic: str
) -> None:
    produce(kafka_bootstrap, topic, [(0, f"r{i}".encode()) for i in range(6)])
    settings = kafka_settings(kafka_bootstrap, f"scan-{uuid.uuid4().hex[:8]}")

    def middle(offsets: Offsets, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return {0: (2, 4), 1: (0, 0)}

    with scan(settings, topic, "test", middle) as records:
        assert [m.value() for m in records] == [b"r2", b"r3"]

    def nothing(offsets: Offsets, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return {p: (5, 5) for p in partitions}

    with scan(settings, topic, "test", nothing) as records:
        assert list(records) == []


def test_aborted_records_are_skipped_and_transaction_markers_end_the_pass(
    kafka_bootstrap: str, topic: str
) -> None:
    produce(kafka_bootstrap, topic, [(0, b"kept-1"), (0, b"kept-2")], transaction="commit")
    produce(kafka_bootstrap, topic, [(0, b"aborted")], transaction="abort")
    produce(kafka_bootstrap, topic, [(0, b"kept-3")], transaction="commit")
    settings = kafka_settings(kafka_bootstrap, f"scan-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    assert values(settings, topic, 0) == [(0, b"kept-1"), (0, b"kept-2"), (0, b"kept-3")]
    # the last offset is a commit marker: the position, not an idle wait, ends the pass
    assert time.monotonic() - started < IDLE_S


def test_a_missing_topic_is_refused(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, f"scan-{uuid.uuid4().hex[:8]}")
    with (
        pytest.raises(BrokerError, match="does not exist"),
        scan(settings, f"missing-{uuid.uuid4().hex[:8]}", "test", from_the_start),
    ):
        pass
