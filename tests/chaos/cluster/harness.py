"""The cluster chaos scenarios' parts: a steady load, consumer members on hosts of their own, their
readiness watched, the outputs accounted per input record, and each scenario's figures.

A scenario: fresh topics on the three-node cluster (replication factor 3), members started, a
steady load of uploads, the fault, the heal, the load ended at ``MINIMUM_UPLOADS`` or more, every
upload answered, the members stopped with SIGTERM; then the accounting (missing, duplicates, dead
letters), the longest stall of the verdicts, the time to recover and each member's time not ready.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from consumer.core.records import MediaType, UploadEvent
from consumer.serde import AvroCodec
from moderation_devtools.broker import free_port
from moderation_devtools.cluster import CLIENT_TIMEOUTS, Host, KafkaCluster, Network, probe
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    upload,
    wait_until,
)

from ..harness import Accounting, OutputCollector, Source

__all__ = ["MODES", "ClusterOutputs", "Load", "Member", "Readiness", "Scenario", "ScenarioResult"]

MODES = ["exactly_once", "at_least_once"]
INPUT_PARTITIONS = 6
OUTPUT_PARTITIONS = 3
RATE = float(os.environ.get("CHAOS_CLUSTER_RATE", "100"))  # uploads/s, open loop
MINIMUM_UPLOADS = int(os.environ.get("CHAOS_CLUSTER_UPLOADS", "2000"))
STALL_AFTER_S = 5.0  # the members' processing.stall_after_s: /readyz false after 5 s without progress
RESULTS = Path(os.environ.get("CHAOS_CLUSTER_RESULTS", ".local/chaos-cluster/results.jsonl"))


class Load:
    """Uploads produced at ``RATE`` per second from a thread (acks=all, idempotent) until stopped:
    a steady load that goes on through the fault, as real traffic does."""

    def __init__(self, cluster: KafkaCluster, topic: str, seed: int) -> None:
        self._topic = topic
        self._rng = random.Random(seed)
        self._images = [image_bytes(make_image(s, (160, 120))) for s in range(20)]
        self._codec = AvroCodec()
        self._producer = Producer(
            {
                **cluster.client_config(),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "delivery.timeout.ms": 300_000,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.produced = 0
        self.failures: list[str] = []

    def _upload(self, i: int) -> UploadEvent:
        if i % 10 == 0:
            data = self._rng.choice(self._images)
            return upload(MediaType.IMAGE, upload_id=f"k-{i}", data=data, content_type="image/png")
        return upload(MediaType.TEXT, upload_id=f"k-{i}", text=f"cluster upload {i} {self._rng.random()}")

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(err.str())

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * RATE)
            while self.produced < due:
                u = self._upload(self.produced)
                value = self._codec.encode("UploadEvent", u.to_avro())
                try:
                    self._producer.produce(
                        self._topic, key=u.upload_id.encode(), value=value, on_delivery=self._delivered
                    )
                except BufferError:  # the brokers are away for a moment: the uploads wait here
                    break
                self.produced += 1
            self._producer.poll(0.01)

    def start(self) -> Load:
        self._thread.start()
        return self

    def halt(self) -> None:
        """Stop producing now (a scenario that failed): no thread left writing into the next one."""
        self._stop.set()
        self._thread.join(30)

    def stop(self, minimum: int) -> int:
        """Go on until ``minimum`` uploads were produced, then stop and wait for every ack."""
        wait_until(lambda: self.produced >= minimum, minimum / RATE + 120)
        self._stop.set()
        self._thread.join(30)
        left = self._producer.flush(120)
        assert left == 0 and not self.failures, f"load not acknowledged: {left} left, {self.failures[:3]}"
        return self.produced


class ClusterOutputs(OutputCollector):
    """The chaos collector, also keeping each verdict's append time (for the stall) and counting
    verdicts that failed closed (a provider's answer missing)."""

    def __init__(self, cluster: KafkaCluster, verdicts: str, dlq: str) -> None:
        super().__init__(cluster.bootstrap, verdicts, dlq)
        self._verdict_topic = verdicts
        self.times: list[float] = []  # the verdicts' timestamps, seconds since the epoch
        self.failed_closed = 0

    def handle(self, msg: Message) -> None:
        super().handle(msg)
        if msg.topic() == self._verdict_topic:
            self.times.append(msg.timestamp()[1] / 1000)
            record = self.codec.decode(msg.value(), "ModerationVerdict")
            if any(r["label"].startswith("check_unavailable") for r in record["reasons"]):
                self.failed_closed += 1

    def longest_stall(self, since: float) -> float:
        """The longest time without a new verdict after ``since`` (epoch seconds)."""
        with self._lock:
            times = sorted(t for t in self.times if t >= since)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class Member:
    """One consumer process on its host."""

    name: str
    host: Host
    process: ConsumerProcess
    health: str  # base URL of its /readyz

    def readyz(self) -> dict[str, Any] | None:
        """The probe's answer, or None when it does not answer within a second (a kubelet's view)."""
        return probe(f"{self.health}/readyz")


class Readiness:
    """Probes every member's /readyz twice a second from a thread, as a kubelet would."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.samples: dict[str, list[tuple[float, bool]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                members = [m for m in self.members.values() if m.process.alive]
            for m in members:
                answer = m.readyz()
                ready = bool(answer and answer["ready"])
                with self._lock:
                    self.samples.setdefault(m.name, []).append((time.monotonic(), ready))

    def watch(self, member: Member) -> None:
        with self._lock:
            self.members[member.name] = member

    def not_ready_during(self, name: str, start: float, end: float) -> bool:
        with self._lock:
            return any(not ready for t, ready in self.samples.get(name, []) if start <= t <= end)

    def not_ready_seconds(self, name: str) -> float:
        """Seconds of not-ready samples after the member first became ready."""
        with self._lock:
            samples = list(self.samples.get(name, []))
        first = next((i for i, (_, ready) in enumerate(samples) if ready), len(samples))
        return 0.5 * sum(1 for _, ready in samples[first:] if not ready)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class ScenarioResult:
    scenario: str
    mode: str
    accounting: Accounting
    failed_closed: int
    stall_s: float
    recover_s: float
    not_ready_s: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return self.accounting.line(
            scenario=self.scenario,
            mode=self.mode,
            failed_closed=self.failed_closed,
            stall_s=round(self.stall_s, 1),
            recover_s=round(self.recover_s, 1),
            not_ready_s=",".join(f"{k}:{v:.1f}" for k, v in sorted(self.not_ready_s.items())) or "-",
            **self.extra,
        )

    def save(self) -> None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        row = {
            **vars(self.accounting),
            "scenario": self.scenario,
            "mode": self.mode,
            "failed_closed": self.failed_closed,
            "stall_s": round(self.stall_s, 2),
            "recover_s": round(self.recover_s, 2),
            "not_ready_s": self.not_ready_s,
            **self.extra,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with RESULTS.open("a") as out:
            out.write(json.dumps(row) + "\n")


@dataclass
class Scenario:
    """One scenario's topics, group, members and load on the session's cluster and network."""

    name: str
    mode: str
    cluster: KafkaCluster
    network: Network
    sim: SimulatorProcess
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    members: dict[str, Member] = field(default_factory=dict)
    readiness: Readiness = field(default_factory=Readiness)
    fault_at: float = 0.0  # monotonic
    fault_wall: float = 0.0  # epoch seconds
    recover_s: float = 0.0
    heal_at: float = 0.0  # monotonic
    heal_backlog: int = 0  # uploads produced before the heal
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def topics(self) -> dict[str, str]:
        names = ("input", "verdict", "review", "escalation", "dlq", "deleted", "review_decision", "callback")
        return {f"{n}_topic": f"cc-{self.name[:20]}-{n}-{self.suffix}" for n in names}

    @property
    def group(self) -> str:
        return f"cc-{self.name[:20]}-{self.suffix}"

    @property
    def exactly_once(self) -> bool:
        return self.mode == "exactly_once"

    def create_topics(self, input_leader: int = 0, output_leader: int = 0) -> None:
        """Input and output topics, RF 3; a leader node > 0 puts every partition's leadership there."""
        placement = {
            topic: (INPUT_PARTITIONS, input_leader)
            if key == "input_topic"
            else (OUTPUT_PARTITIONS, output_leader)
            for key, topic in self.topics.items()
        }
        self.cluster.create_topics(placement)

    def delete_topics(self) -> None:
        """This scenario's topics go with it: the cluster stays small, its restarts quick."""
        futures = self.cluster.admin().delete_topics(list(self.topics.values()), operation_timeout=30)
        for future in futures.values():
            with contextlib.suppress(Exception):  # never created (a scenario that failed early)
                future.result(60)

    def transactional_id(self, member: str) -> str:
        return f"{self.group}-{member}"

    def env(self, member: str, host: Host) -> dict[str, str]:
        health_port = 9100 if self.network.namespaces else free_port()
        return consumer_env(
            self.cluster.bootstrap,
            self.sim.url,
            group=self.group,
            topics=self.topics,
            MODERATION_PROCESSING__DELIVERY=self.mode,
            MODERATION_KAFKA__TRANSACTIONAL_ID=self.transactional_id(member),
            MODERATION_KAFKA__CREATE_TOPICS="false",
            MODERATION_KAFKA__CLIENT_CONFIG=json.dumps(CLIENT_TIMEOUTS),
            MODERATION_PROCESSING__STALL_AFTER_S=str(STALL_AFTER_S),
            MODERATION_PROCESSING__REVOKE_DRAIN_S="5",
            MODERATION_PROCESSING__DRAIN_TIMEOUT_S="20",
            MODERATION_HEALTH__HOST=host.management,
            MODERATION_HEALTH__PORT=str(health_port),
            MODERATION_LOG_LEVEL=os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        )

    def start_member(self, name: str, host: str) -> Member:
        where = self.network.hosts[host]
        env = self.env(name, where)
        process = ConsumerProcess(
            env, log_path=self.workdir / f"{self.name}-{self.mode}-{name}.log", launcher=where.launcher
        ).start()
        if process.process is not None:
            where.pid = process.process.pid
        member = Member(name, where, process, f"http://{where.management}:{env['MODERATION_HEALTH__PORT']}")
        self.members[name] = member
        self.readiness.watch(member)
        return member

    def wait_ready(self, name: str, timeout: float = 60.0, assigned: bool = True) -> bool:
        member = self.members[name]

        def ready() -> bool:
            answer = member.readyz()
            return bool(answer and answer["ready"] and (answer["assigned"] or not assigned))

        return wait_until(ready, timeout, 0.25)

    def fault(self) -> None:
        """Mark the moment the fault is injected (the stall is measured from here)."""
        self.fault_at, self.fault_wall = time.monotonic(), time.time()

    def healed(self, load: Load) -> None:
        """Mark the heal (the link up, the node restarted, the roll over): recovery counts from here."""
        self.heal_at, self.heal_backlog = time.monotonic(), load.produced

    def recovered_after(self, out: ClusterOutputs, load: Load) -> float:
        """Wait until every upload produced before the heal is answered; the seconds from the heal
        that took are the time to recover (the fault's backlog drained)."""
        if not self.heal_at:
            self.healed(load)
        target = self.heal_backlog
        assert out.wait_answered(target, 240), f"{target - out.answered()} uploads unanswered after the heal"
        self.recover_s = time.monotonic() - self.heal_at
        return self.recover_s

    def diagnose(self, out: ClusterOutputs, what: str) -> str:
        return (
            f"{what}: answered {out.answered()}, committed {self.committed()},"
            f" input ends {self.input_ends()}, members alive"
            f" {[n for n, m in self.members.items() if m.process.alive]}; logs in {self.workdir}"
        )

    @contextmanager
    def _client(self, group: str = "cc-ends") -> Iterator[Consumer]:
        consumer = Consumer({**self.cluster.client_config(), "group.id": group})
        try:
            yield consumer
        finally:
            consumer.close()

    def input_ends(self) -> dict[int, int]:
        topic = self.topics["input_topic"]
        with self._client() as consumer:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(INPUT_PARTITIONS)
            }

    def output_ends(self) -> dict[tuple[str, int], int]:
        topics = (self.topics["verdict_topic"], self.topics["dlq_topic"])
        with self._client() as consumer:
            return {
                (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30)[1]
                for t in topics
                for p in range(OUTPUT_PARTITIONS)
            }

    def committed(self) -> dict[int, int]:
        with self._client(self.group) as consumer:
            parts = [TopicPartition(self.topics["input_topic"], p) for p in range(INPUT_PARTITIONS)]
            return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30)}

    def run(
        self,
        members: list[str],
        fault: Callable[[Scenario, ClusterOutputs, Load], None],
        report: Callable[[str], None],
        warm: int = 300,
    ) -> ScenarioResult:
        """The whole scenario around ``fault`` (which injects, heals and sets ``recover_s``)."""
        self.cluster.wait_healthy()
        load = Load(self.cluster, self.topics["input_topic"], seed=int(self.suffix, 16))
        try:
            return self._run(load, members, fault, report, warm)
        finally:
            load.halt()

    def _run(
        self,
        load: Load,
        members: list[str],
        fault: Callable[[Scenario, ClusterOutputs, Load], None],
        report: Callable[[str], None],
        warm: int,
    ) -> ScenarioResult:
        with (
            ClusterOutputs(self.cluster, self.topics["verdict_topic"], self.topics["dlq_topic"]) as out,
            self.readiness,
        ):
            for i, name in enumerate(members):
                self.start_member(name, f"c{i + 1}")
            for name in members:
                assert self.wait_ready(name, assigned=False), f"member {name} never became ready"
            load.start()
            assert out.wait_answered(warm, 120), self.diagnose(out, "no progress before the fault")
            fault(self, out, load)
            total = load.stop(MINIMUM_UPLOADS)
            assert out.wait_answered(total, 300), self.diagnose(out, f"{total - out.answered()} unanswered")
            for name, member in self.members.items():
                if member.process.alive:
                    assert self.wait_ready(name, 60, assigned=False), f"{name} not ready at the end"
            for name, member in self.members.items():
                if member.process.alive:
                    assert member.process.terminate(60) == 0, f"{name} did not stop cleanly"
            if not self.exactly_once:  # read everything written (no transaction markers to wait on)
                assert out.caught_up(self.output_ends(), 60)
            sources: set[Source] = {(p, o) for p, end in self.input_ends().items() for o in range(end)}
            counts = out.accounting(sources)
            self.extra["input_rewritten"] = counts.uploads - total
            result = ScenarioResult(
                self.name,
                self.mode,
                counts,
                out.failed_closed,
                out.longest_stall(self.fault_wall - 1),
                self.recover_s,
                {name: self.readiness.not_ready_seconds(name) for name in self.members},
                self.extra,
            )
        report(result.line())
        result.save()
        # the load's idempotent producer can still write a record twice across a broker restart
        # (seen in the rolling restart: 3 in 13,916); each copy is an input record of its own
        assert counts.uploads >= total, f"{counts.uploads} input records for {total} produced"
        assert counts.missing == 0, self.diagnose(out, f"{counts.missing} missing")
        assert counts.dead_letters == 0, f"{counts.dead_letters} dead letters caused by the fault"
        if self.exactly_once:
            assert counts.duplicates == 0, f"{counts.duplicates} duplicates in exactly_once"
            assert self.committed() == self.input_ends()
        return result
