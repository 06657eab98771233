"""A commit whose partitions were lost gives up at once: found on the three-node cluster, where a
killed group coordinator left ``send_offsets_to_transaction`` waiting out its whole deadline
after the group had already expelled the member. Here the broker is paused (SIGSTOP) so the call
cannot return; ``doom`` (what losing the partitions calls) abandons it and rebuilds the producer."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from consumer.config import load_settings
from consumer.core.offsets import Position
from consumer.errors import TransactionLost
from consumer.kafka import ensure_topics
from consumer.kafka.transactions import TransactionalSink
from moderation_devtools.broker import LocalKafka
from moderation_devtools.stack import QUIET, wait_until_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _in_send_offsets() -> bool:
    return any(t.name == "kafka-txn-send_offsets_to_transaction" for t in threading.enumerate())


async def test_a_doomed_commit_is_abandoned_not_waited_out(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "kafka", heap="256m")
    bootstrap = broker.start()
    paused = False
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": "doomed", "logger": QUIET})
    try:
        settings = load_settings(kafka={"bootstrap_servers": bootstrap})
        ensure_topics(settings.kafka, ["doomed-in", "doomed-out"], partitions=1)
        # the group's coordinator exists before the broker is paused
        Producer({"bootstrap.servers": bootstrap, "logger": QUIET}).flush(10)
        sink = TransactionalSink(settings.kafka, "doomed-test")
        await sink.init()
        sink.start()
        sink.produce("doomed-out", b"k", b"v")
        assert await sink.flush(30) == 0
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        paused = True
        commit = asyncio.create_task(
            sink.commit(lambda: {("doomed-in", 0): Position(1)}, group.consumer_group_metadata)
        )
        assert await wait_until_async(_in_send_offsets, 20), "the commit never reached send_offsets"
        sink.doom("partitions lost")
        os.kill(broker.process.pid, signal.SIGCONT)  # the rebuilt producer registers at once
        paused = False
        with pytest.raises(TransactionLost, match="send_offsets_to_transaction abandoned: partitions lost"):
            await asyncio.wait_for(commit, 30)  # waited out, it would say "did not return" (11 s)
        sink.produce("doomed-out", b"k", b"again")  # the rebuilt producer works
        assert await sink.commit(lambda: {}, group.consumer_group_metadata) == {}
        await sink.close()
    finally:
        if paused and broker.process is not None:
            os.kill(broker.process.pid, signal.SIGCONT)
        group.close()
        broker.stop()
