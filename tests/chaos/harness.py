"""A chaos stack of its own: a broker that can be restarted, a faulty simulator, consumer processes
that can be killed, and an accounting of outputs per input record (verdict or dead letter)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from consumer.config import load_settings
from consumer.kafka import ensure_topics
from moderation_devtools.broker import LocalKafka
from moderation_devtools.stack import (
    QUIET,
    ConsumerProcess,
    SimulatorProcess,
    TopicReader,
    consumer_env,
    wait_until,
)

__all__ = ["Accounting", "ChaosStack", "OutputCollector"]

# 10 % 5xx, 5 % 429, 2 % hangs (longer than the client's timeout)
FAULTS = ["500=0.04", "502=0.02", "503=0.02", "504=0.02", "429=0.05", "hang=0.02"]
INPUT_PARTITIONS = 6
OUTPUT_PARTITIONS = 3

Source = tuple[int, int]  # input partition, offset


@dataclass
class Accounting:
    uploads: int
    verdicts: int
    dead_letters: int
    duplicates: int
    missing: int

    def line(self, **extra: Any) -> str:
        fields = {**vars(self), **extra}
        return "accounting: " + " ".join(f"{k}={v}" for k, v in fields.items())


class OutputCollector(TopicReader):
    """Reads the verdict and dead letter topics in a thread, counting outputs per input record."""

    def __init__(self, bootstrap: str, verdicts: str, dlq: str, isolation: str = "read_committed") -> None:
        super().__init__(bootstrap, [verdicts, dlq], isolation)
        self._schemas = {verdicts: ("v", "ModerationVerdict"), dlq: ("d", "DeadLetter")}
        self.outputs: dict[Source, list[str]] = {}  # per input record: "v" or "d" per output seen
        self.positions: dict[tuple[str, int], int] = {}

    def handle(self, msg: Message) -> None:
        kind, schema = self._schemas[msg.topic()]
        record = self.codec.decode(msg.value(), schema)
        source = (record["source_partition"], record["source_offset"])
        self.outputs.setdefault(source, []).append(kind)
        self.positions[(msg.topic(), msg.partition())] = msg.offset() + 1

    def answered(self) -> int:
        with self._lock:
            return len(self.outputs)

    def wait_answered(self, count: int, timeout: float) -> bool:
        return wait_until(lambda: self.answered() >= count, timeout, 0.05)

    def caught_up(self, ends: dict[tuple[str, int], int], timeout: float) -> bool:
        """Wait until every output written before ``ends`` was read (at-least-once: no markers)."""

        def read_all() -> bool:
            with self._lock:
                return all(self.positions.get(tp, 0) >= end for tp, end in ends.items() if end > 0)

        return wait_until(read_all, timeout, 0.05)

    def at_or_after(self, committed: dict[int, int]) -> int:
        """Outputs seen for input records at or beyond the committed offsets: what a restart redoes
        at most (the commit metadata spares some of them)."""
        with self._lock:
            return sum(len(kinds) for (p, o), kinds in self.outputs.items() if o >= committed.get(p, 0))

    def accounting(self, sources: set[Source]) -> Accounting:
        with self._lock:
            kinds = [k for s in sources for k in self.outputs.get(s, [])]
            return Accounting(
                uploads=len(sources),
                verdicts=kinds.count("v"),
                dead_letters=kinds.count("d"),
                duplicates=sum(len(self.outputs[s]) - 1 for s in sources if len(self.outputs.get(s, [])) > 1),
                missing=sum(1 for s in sources if s not in self.outputs),
            )


@dataclass
class ChaosStack:
    workdir: Path
    mode: str  # at_least_once | exactly_once
    broker: LocalKafka = field(init=False)
    sim: SimulatorProcess = field(init=False)
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    consumers: dict[str, ConsumerProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.broker = LocalKafka(self.workdir / "kafka", heap="512m")

    @property
    def topics(self) -> dict[str, str]:
        names = ("input", "verdict", "review", "escalation", "dlq", "deleted", "review_decision", "callback")
        return {f"{n}_topic": f"chaos-{n}-{self.suffix}" for n in names}

    @property
    def group(self) -> str:
        return f"chaos-{self.suffix}"

    def start(self) -> ChaosStack:
        self.broker.start()
        self.sim = SimulatorProcess(
            extra_args=[a for f in FAULTS for a in ("--fault", f)] + ["--hang-s", "3"],
            log_path=self.workdir / "simulator.log",
        ).start()
        settings = load_settings(kafka={"bootstrap_servers": self.broker.bootstrap})
        ensure_topics(settings.kafka, [self.topics["input_topic"]], partitions=INPUT_PARTITIONS)
        ensure_topics(
            settings.kafka,
            [t for k, t in self.topics.items() if k != "input_topic"],
            partitions=OUTPUT_PARTITIONS,
        )
        return self

    def stop(self) -> None:
        for c in self.consumers.values():
            if c.alive:
                c.kill()
        self.sim.stop()
        self.broker.stop()

    def env(self, instance: str) -> dict[str, str]:
        return consumer_env(
            self.broker.bootstrap,
            self.sim.url,
            group=self.group,
            topics=self.topics,
            MODERATION_PROCESSING__DELIVERY=self.mode,
            MODERATION_KAFKA__TRANSACTIONAL_ID=f"{self.group}-{instance}",
            MODERATION_KAFKA__CREATE_TOPICS="false",
            # a killed member's partitions move on after 6 s (the broker's minimum), not 45 s
            MODERATION_KAFKA__CLIENT_CONFIG='{"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}',
            MODERATION_HIVE__TIMEOUT_S="1.5",
            MODERATION_PROCESSING__REVOKE_DRAIN_S="5",
            MODERATION_PROCESSING__DRAIN_TIMEOUT_S="10",
            MODERATION_LOG_LEVEL=os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        )

    def start_consumer(self, instance: str) -> ConsumerProcess:
        c = ConsumerProcess(self.env(instance), log_path=self.workdir / f"consumer-{instance}.log").start()
        self.consumers[instance] = c
        return c

    def diagnose(self, out: OutputCollector, what: str) -> str:
        """A failure message with what the group committed and what the collector has read."""
        return (
            f"{what}: answered {out.answered()}, committed {self.committed()}, ends {self.input_ends()},"
            f" outputs read to {out.positions}, output ends {self.output_ends()},"
            f" consumers alive {[name for name, c in self.consumers.items() if c.alive]}"
        )

    def restart_broker(self) -> None:
        self.broker.stop()
        self.broker.start()

    @contextmanager
    def _client(self, group: str = "chaos-ends") -> Iterator[Consumer]:
        """A consumer that joins nothing: for committed offsets and watermarks."""
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": group, "logger": QUIET})
        try:
            yield consumer
        finally:
            consumer.close()

    def _ends(self, topic: str, partitions: int) -> dict[int, int]:
        with self._client() as consumer:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)
            }

    def committed(self) -> dict[int, int]:
        """The group's committed input offsets right now."""
        with self._client(self.group) as consumer:
            parts = [TopicPartition(self.topics["input_topic"], p) for p in range(INPUT_PARTITIONS)]
            return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30)}

    def output_ends(self) -> dict[tuple[str, int], int]:
        topics = (self.topics["verdict_topic"], self.topics["dlq_topic"])
        return {(t, p): end for t in topics for p, end in self._ends(t, OUTPUT_PARTITIONS).items()}

    def input_ends(self) -> dict[int, int]:
        return self._ends(self.topics["input_topic"], INPUT_PARTITIONS)
