"""/readyz turns false when a commit itself hangs. Found on the three-node cluster: in exactly_once,
a commit waits for its outputs' acknowledgements, and while the brokers could not take them (the
verdict topic's replicas below min.insync.replicas) no commit round ended, and it was the commit
rounds that looked for partitions unable to commit: /readyz said ready throughout. Here the broker
is paused (SIGSTOP) just as finished outputs go into the transaction."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.config import load_settings
from consumer.core.records import MediaType
from consumer.kafka import ensure_topics
from moderation_devtools.broker import LocalKafka
from moderation_devtools.stack import SimulatorProcess, produce_uploads, upload, wait_until_async

from .conftest import Topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_commit_that_hangs_turns_readiness_false_and_back(
    tmp_path: Path,
    sim: SimulatorProcess,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    broker = LocalKafka(tmp_path / "kafka", heap="256m")
    bootstrap = broker.start()
    assert broker.process is not None
    paused = False
    try:
        t = Topics(
            *(f"ready-{n}" for n in ("in", "v", "r", "e", "dlq", "del", "dec", "cb", "sh")), group="ready"
        )
        ensure_topics(load_settings(kafka={"bootstrap_servers": bootstrap}).kafka, list(t.env().values()), 1)
        # a commit round that has not ended within 3 s, with work in it, is a partition that cannot commit
        settings = settings_for(t, stall_after_s=3.0, delivery="exactly_once")
        settings.kafka.bootstrap_servers = bootstrap
        async with running_service(settings) as service:
            assert await wait_until_async(lambda: service.watch.ready().ok, 30), "never ready"
            sim.admin("/_admin/faults", json={"hang": 1.0, "hang_s": 1.5})  # shorter than the 3 s
            produce_uploads(bootstrap, t.input, [upload(MediaType.TEXT, text=f"r{i}") for i in range(5)])
            assert await wait_until_async(lambda: bool(service.progress.running), 30), "nothing in flight"
            os.kill(broker.process.pid, signal.SIGSTOP)  # the outputs of what is in flight cannot land
            paused = True
            # the transaction's commit now waits up to 20 s for acknowledgements: readiness must not
            assert await wait_until_async(lambda: not service.watch.ready().ok, 12), (
                "ready while unable to commit"
            )
            assert service.watch.ready().detail["not_committing"]
            sim.admin("/_admin/faults", json={"hang": 0.0})
            os.kill(broker.process.pid, signal.SIGCONT)
            paused = False
            assert await wait_until_async(lambda: service.watch.ready().ok, 60), "not ready again after"
    finally:
        if paused:
            os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()
