"""Cooperative rebalancing mid-stream: a second and a third consumer join, the second leaves
(SIGTERM: drain, commit, exit 0), the third is killed (kill -9), a fourth joins. Every upload has a
verdict or a dead letter; exactly_once: one each; at_least_once: duplicates within the kill's
in-flight records (revocations drain and commit, so they add none)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consumer.core.records import MediaType
from moderation_devtools.stack import produce_uploads, upload

from .harness import ChaosStack, OutputCollector, Source

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]

UPLOADS = 3_000


def test_members_join_leave_and_die_mid_stream_without_loss(
    stack: ChaosStack, accounting: Callable[[str], None]
) -> None:
    items = [upload(MediaType.TEXT, upload_id=f"r-{i}", text=f"rebalance {i}") for i in range(UPLOADS)]
    produce_uploads(stack.broker.bootstrap, stack.topics["input_topic"], items, raw=[(b"p", b"not avro")])
    sources: set[Source] = {(p, o) for p, end in stack.input_ends().items() for o in range(end)}
    total = len(sources)
    exactly_once = stack.mode == "exactly_once"
    in_flight_at_kill = 0
    with OutputCollector(
        stack.broker.bootstrap, stack.topics["verdict_topic"], stack.topics["dlq_topic"]
    ) as out:
        first = stack.start_consumer("a")
        assert out.wait_answered(total // 10, 120)
        second = stack.start_consumer("b")
        assert out.wait_answered(total * 2 // 10, 120)
        third = stack.start_consumer("c")
        assert out.wait_answered(total * 4 // 10, 120)
        assert second.terminate(60) == 0  # leaves: its partitions are drained, committed, handed over
        assert out.wait_answered(total * 6 // 10, 120)
        third.kill()
        if not exactly_once:
            assert out.caught_up(stack.output_ends(), 60)
            in_flight_at_kill = out.at_or_after(stack.committed())
        fourth = stack.start_consumer("d")
        assert out.wait_answered(total, 180), f"{total - out.answered()} uploads unanswered"
        assert first.terminate(60) == 0 and fourth.terminate(60) == 0
        if not exactly_once:
            assert out.caught_up(stack.output_ends(), 60)
        counts = out.accounting(sources)
    accounting(counts.line(mode=stack.mode, joined=3, left=1, killed=1, in_flight_at_kills=in_flight_at_kill))
    assert counts.missing == 0 and counts.dead_letters >= 1
    if exactly_once:
        assert counts.duplicates == 0
        assert stack.committed() == stack.input_ends()
    else:
        assert counts.duplicates <= in_flight_at_kill
