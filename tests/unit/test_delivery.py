"""Both delivery strategies against an in-memory fake of the Kafka client (no broker): what is
committed, when, and how a lost transaction rewinds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from consumer.core.epochs import Epochs
from consumer.core.offsets import OffsetTracker, Position, TopicPartition
from consumer.core.scheduler import Scheduler, Work
from consumer.core.stalls import CommitWatch
from consumer.delivery.progress import Progress
from consumer.delivery.strategies import AtLeastOnce, ExactlyOnce
from consumer.errors import TransactionLost

T = TypeVar("T")
TP0, TP1 = ("uploads", 0), ("uploads", 1)


@dataclass
class FakeSource:
    """The consumer calls a strategy makes, recorded; committed positions kept in memory."""

    group_metadata: Any = "generation-1"
    commits: list[tuple[dict[TopicPartition, Position], bool]] = field(default_factory=list)
    stored: dict[TopicPartition, Position] = field(default_factory=dict)
    seeks: list[dict[TopicPartition, int | None]] = field(default_factory=list)
    resumed: list[TopicPartition] = field(default_factory=list)

    def commit(self, positions: Mapping[TopicPartition, Position], *, asynchronous: bool = False) -> bool:
        self.commits.append((dict(positions), asynchronous))
        self.stored.update(positions)
        return True

    def committed(self, parts: list[TopicPartition], timeout: float = 10.0) -> dict[TopicPartition, Position]:
        return {tp: self.stored[tp] for tp in parts if tp in self.stored}

    def seek(self, positions: Mapping[TopicPartition, int | None]) -> None:
        self.seeks.append(dict(positions))

    def resume(self, parts: list[TopicPartition]) -> None:
        self.resumed += parts

    async def in_thread(self, call: Callable[[], T]) -> T:
        return call()


@dataclass
class FakeSink:
    flushed: list[float] = field(default_factory=list)
    started: bool = False
    closed: bool = False

    def start(self) -> None:
        self.started = True

    async def flush(self, within_s: float) -> int:
        self.flushed.append(within_s)
        return 0

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeTransactionalSink(FakeSink):
    """Commits what ``positions()`` gives into the fake source, or loses the transaction when told."""

    source: FakeSource = field(default_factory=FakeSource)
    lose_next: bool = False
    aborted: list[str] = field(default_factory=list)
    initialised: bool = False
    hang_next: bool = False  # the next commit waits until doomed, as librdkafka can
    doomed: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    async def init(self) -> None:
        self.initialised = True

    async def commit(
        self, positions: Callable[[], Mapping[TopicPartition, Position]], group_metadata: Callable[[], Any]
    ) -> Mapping[TopicPartition, Position]:
        if self.lose_next:
            self.lose_next = False
            raise TransactionLost("fenced")
        if self.hang_next:
            self.hang_next = False
            self.hanging.set()
            await self.doomed.wait()
            raise TransactionLost("abandoned")
        settled = dict(positions())
        assert group_metadata() == self.source.group_metadata
        self.source.stored.update(settled)
        return settled

    async def abort(self, reason: str) -> None:
        self.aborted.append(reason)

    def doom(self, why: str) -> None:
        self.doomed.set()


class RecordingProgress(Progress):
    """The real bookkeeping, remembering each commit it is told of."""

    def __init__(self) -> None:
        super().__init__(Scheduler(), CommitWatch(after_s=60))
        self.seen: list[dict[TopicPartition, Position]] = []

    def committed(self, positions: dict[TopicPartition, Position]) -> None:
        super().committed(positions)
        self.seen.append(positions)


@dataclass
class FakeHost:
    """What a strategy is built from: the process's bookkeeping and the consumer."""

    source: FakeSource
    progress: RecordingProgress = field(default_factory=RecordingProgress)

    @property
    def tracker(self) -> OffsetTracker:
        return self.progress.tracker

    @property
    def scheduler(self) -> Scheduler:
        return self.progress.scheduler

    @property
    def epochs(self) -> Epochs:
        return self.progress.epochs

    @property
    def seen(self) -> list[dict[TopicPartition, Position]]:
        return self.progress.seen


def host_with_work(
    *done: tuple[TopicPartition, int], pending: tuple[TopicPartition, int] | None = None
) -> FakeHost:
    host = FakeHost(FakeSource())
    host.epochs.assign([TP0, TP1])
    for tp, offset in sorted({*done, *([pending] if pending else [])}):
        host.tracker.track(tp, offset)
        host.scheduler.offer(Work(tp, offset, None, 1))
    for tp, offset in done:
        host.tracker.complete(tp, offset)
    return host


async def test_at_least_once_commits_finished_offsets_through_the_consumer() -> None:
    host = host_with_work((TP0, 0), (TP0, 1), (TP1, 0), pending=(TP1, 1))
    delivery = AtLeastOnce(host.progress, host.source, FakeSink(), 0.5)  # type: ignore[arg-type]
    await delivery.commit()
    ((positions, asynchronous),) = host.source.commits
    assert asynchronous and positions == {TP0: Position(2), TP1: Position(1)}
    await delivery.commit()  # nothing new: nothing sent
    assert len(host.source.commits) == 1
    host.tracker.complete(TP1, 1)
    await delivery.commit(final=True)
    assert host.source.commits[-1] == ({TP1: Position(2)}, False)  # at shutdown: synchronously


async def test_at_least_once_revocation_waits_for_acknowledgements_and_gives_its_positions() -> None:
    host = host_with_work((TP0, 0), (TP1, 0))
    sink = FakeSink()
    delivery = AtLeastOnce(host.progress, host.source, sink, 0.5)  # type: ignore[arg-type]
    positions = await delivery.revoke([TP0], within_s=3.0)
    assert sink.flushed == [3.0] and positions == {TP0: Position(1)}
    await delivery.lose([TP1])
    assert not delivery.rewind_needed and not host.source.commits  # a loss commits nothing


async def test_exactly_once_commits_inside_the_transaction() -> None:
    host = host_with_work((TP0, 0), (TP0, 1))
    sink = FakeTransactionalSink(source=host.source)
    delivery = ExactlyOnce(host.progress, host.source, sink, 0.1)  # type: ignore[arg-type]
    await delivery.start()
    await delivery.commit()
    assert sink.initialised and host.seen == [{TP0: Position(2)}]
    assert not host.source.commits  # never through the consumer
    assert await delivery.revoke([TP0], within_s=1.0) == {}


async def test_a_lost_transaction_drops_running_results_and_rewinds_to_the_committed_offsets() -> None:
    host = host_with_work((TP0, 0), (TP0, 1), pending=(TP0, 2))
    sink = FakeTransactionalSink(source=host.source)
    delivery = ExactlyOnce(host.progress, host.source, sink, 0.1)  # type: ignore[arg-type]
    await delivery.commit()  # offsets 0 and 1 committed: next to read is 2
    host.tracker.track(TP0, 3)
    host.tracker.complete(TP0, 3)
    epoch = host.epochs.of(TP0)
    sink.lose_next = True
    await delivery.commit()
    assert delivery.rewind_needed
    assert host.epochs.of(TP0) != epoch, "results still running must be recognised as stale"
    assert host.tracker.partitions() == [] and host.scheduler.queued == 0
    await delivery.commit()  # no commit while a rewind is due
    assert len(host.seen) == 1
    await delivery.rewind()
    assert not delivery.rewind_needed
    assert host.source.seeks[-1] == {TP0: 2, TP1: None}  # TP1 never committed: from the beginning
    assert set(host.source.resumed) == {TP0, TP1}


async def test_lost_partitions_abort_the_open_transaction_and_rewind_the_rest() -> None:
    host = host_with_work((TP0, 0), (TP1, 0))
    sink = FakeTransactionalSink(source=host.source)
    delivery = ExactlyOnce(host.progress, host.source, sink, 0.1)  # type: ignore[arg-type]
    await delivery.lose([TP1])
    assert sink.aborted == ["partitions lost"] and delivery.rewind_needed


async def test_losing_partitions_dooms_a_commit_stuck_on_the_brokers_instead_of_waiting_for_it() -> None:
    host = host_with_work((TP0, 0), (TP1, 0))
    sink = FakeTransactionalSink(source=host.source, hang_next=True)
    delivery = ExactlyOnce(host.progress, host.source, sink, 0.1)  # type: ignore[arg-type]
    commit = asyncio.create_task(delivery.commit())
    await asyncio.wait_for(sink.hanging.wait(), 5)
    await asyncio.wait_for(delivery.lose([TP1]), 5)
    await commit
    assert sink.doomed.is_set() and sink.aborted == ["partitions lost"] and delivery.rewind_needed


@pytest.mark.parametrize("strategy", [AtLeastOnce, ExactlyOnce])
async def test_close_closes_the_sink(strategy: type[AtLeastOnce] | type[ExactlyOnce]) -> None:
    sink = FakeTransactionalSink()
    host = FakeHost(FakeSource())
    delivery = strategy(host.progress, host.source, sink, 0.1)  # type: ignore[arg-type]
    await delivery.close()
    assert sink.closed
