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

import httpx
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

__all__ = ["MODES", "ClusterOutputs", "Group", "Load", "Member", "Readiness", "Scenario", "ScenarioResult"]

MODES = ["exactly_once", "at_least_once"]
INPUT_PARTITIONS = 6
OUTPUT_PARTITIONS = 3
# uploads/s, open loop: both groups, the cluster, the simulator and this process share two cores
RATE = float(os.environ.get("CHAOS_CLUSTER_RATE", "50"))
MINIMUM_UPLOADS = int(os.environ.get("CHAOS_CLUSTER_UPLOADS", "1500"))
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

    def readyz(self, client: httpx.Client | None = None) -> dict[str, Any] | None:
        """The probe's answer, or None when it does not answer within a second (a kubelet's view)."""
        return probe(f"{self.health}/readyz", client)


def _summary(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return "no answer"
    keys = ("ready", "assigned", "consuming", "stalled", "not_committing")
    return ",".join(f"{k}={answer.get(k)}" for k in keys)


class Readiness:
    """Probes every member's /readyz twice a second from a thread, as a kubelet would."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.samples: dict[str, list[tuple[float, bool]]] = {}
        self.answers: dict[str, list[tuple[float, str]]] = {}  # what each probe said, for failures
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)
        self.client = httpx.Client(timeout=1.0)  # one for every probe (and the scenario's waits)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._round(self.client)

    def _round(self, client: httpx.Client) -> None:
        with self._lock:
            members = [m for m in self.members.values() if m.process.alive]
        for m in members:
            answer = m.readyz(client)
            ready = bool(answer and answer["ready"])
            with self._lock:
                self.samples.setdefault(m.name, []).append((time.monotonic(), ready))
                self.answers.setdefault(m.name, []).append((time.monotonic(), _summary(answer)))

    def watch(self, member: Member) -> None:
        with self._lock:
            self.members[member.name] = member

    def not_ready_during(self, name: str, start: float, end: float) -> bool:
        with self._lock:
            return any(not ready for t, ready in self.samples.get(name, []) if start <= t <= end)

    def timeline(self, name: str, start: float, end: float) -> str:
        """The probe's answers between ``start`` and ``end``, seconds from ``start``: for a failure."""
        with self._lock:
            seen = [(t, a) for t, a in self.answers.get(name, []) if start - 5 <= t <= end]
        return "; ".join(f"{t - start:+.1f}s {a}" for t, a in seen)

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
        self.client.close()


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
class Group:
    """One delivery mode's consumer group: its output topics, its members and what it wrote."""

    mode: str
    name: str  # the group id
    topics: dict[str, str]  # every topic setting, the input shared with the other mode's group
    members: dict[str, Member] = field(default_factory=dict)
    out: ClusterOutputs | None = None
    recover_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return self.mode == "exactly_once"

    @property
    def outputs(self) -> ClusterOutputs:
        assert self.out is not None, "the group's outputs are read while the scenario runs"
        return self.out

    def on(self, host: str) -> Member:
        """Its member on ``host`` (the one started last there)."""
        return [m for m in self.members.values() if m.host.name == host][-1]


@dataclass
class Scenario:
    """One scenario on the session's cluster: an input topic under a steady load, read by two
    groups at once, one per delivery mode (each with output topics of its own), so both modes go
    through the very same fault; members of both run on every consumer host."""

    name: str
    cluster: KafkaCluster
    network: Network
    sim: SimulatorProcess
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    groups: dict[str, Group] = field(default_factory=dict)
    readiness: Readiness = field(default_factory=Readiness)
    load: Load | None = None
    fault_at: float = 0.0  # monotonic
    fault_wall: float = 0.0  # epoch seconds
    heal_at: float = 0.0  # monotonic
    heal_backlog: int = 0  # uploads produced before the heal
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stem = f"cc-{self.name[:20]}"
        names = ("verdict", "review", "escalation", "dlq", "deleted", "review_decision", "callback")
        for mode in MODES:
            tag = "eos" if mode == "exactly_once" else "alo"
            topics = {f"{n}_topic": f"{stem}-{tag}-{n}-{self.suffix}" for n in names}
            topics["input_topic"] = self.input_topic
            self.groups[mode] = Group(mode, f"{stem}-{tag}-{self.suffix}", topics)

    @property
    def input_topic(self) -> str:
        return f"cc-{self.name[:20]}-input-{self.suffix}"

    @property
    def eos(self) -> Group:
        return self.groups["exactly_once"]

    def all_topics(self) -> list[str]:
        return sorted({t for g in self.groups.values() for t in g.topics.values()})

    def output_topics(self, kind: str) -> list[str]:
        return [g.topics[f"{kind}_topic"] for g in self.groups.values()]

    def members(self) -> list[Member]:
        return [m for g in self.groups.values() for m in g.members.values()]

    def create_topics(self, input_leader: int = 0, output_leader: int = 0) -> None:
        """Input and output topics, RF 3; a leader node > 0 puts every partition's leadership there."""
        placement = {
            t: (INPUT_PARTITIONS, input_leader)
            if t == self.input_topic
            else (OUTPUT_PARTITIONS, output_leader)
            for t in self.all_topics()
        }
        self.cluster.create_topics(placement)

    def delete_topics(self) -> None:
        """This scenario's topics go with it: the cluster stays small, its restarts quick."""
        futures = self.cluster.admin().delete_topics(self.all_topics(), operation_timeout=30)
        for future in futures.values():
            with contextlib.suppress(Exception):  # never created (a scenario that failed early)
                future.result(60)

    def transactional_id(self, group: Group, member: str) -> str:
        return f"{group.name}-{member}"

    def label(self, group: Group, member: str) -> str:
        """How the suite names a member: in its probes, its results and its ``client.id``."""
        return f"{'eos' if group.exactly_once else 'alo'}-{member}"

    def env(self, group: Group, member: str, host: Host) -> dict[str, str]:
        health_port = 9100 + MODES.index(group.mode) if self.network.namespaces else free_port()
        client_config = {**CLIENT_TIMEOUTS, "client.id": self.label(group, member)}
        return consumer_env(
            self.cluster.bootstrap,
            self.sim.url,
            group=group.name,
            topics=group.topics,
            MODERATION_PROCESSING__DELIVERY=group.mode,
            MODERATION_KAFKA__TRANSACTIONAL_ID=self.transactional_id(group, member),
            MODERATION_KAFKA__CREATE_TOPICS="false",
            MODERATION_KAFKA__CLIENT_CONFIG=json.dumps(client_config),
            MODERATION_PROCESSING__STALL_AFTER_S=str(STALL_AFTER_S),
            MODERATION_PROCESSING__REVOKE_DRAIN_S="5",
            MODERATION_PROCESSING__DRAIN_TIMEOUT_S="20",
            MODERATION_HEALTH__HOST=host.management,
            MODERATION_HEALTH__PORT=str(health_port),
            MODERATION_LOG_LEVEL=os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        )

    def start_member(self, group: Group, name: str, host: str) -> Member:
        where = self.network.hosts[host]
        env = self.env(group, name, where)
        process = ConsumerProcess(
            env, log_path=self.workdir / f"{self.name}-{group.mode}-{name}.log", launcher=where.launcher
        ).start()
        if process.process is not None:
            where.pids.add(process.process.pid)  # loopback mode: a cut of the host pauses it
        label = self.label(group, name)
        member = Member(label, where, process, f"http://{where.management}:{env['MODERATION_HEALTH__PORT']}")
        group.members[name] = member
        self.readiness.watch(member)
        return member

    def wait_ready(self, member: Member, timeout: float = 60.0, assigned: bool = True) -> bool:
        def ready() -> bool:
            answer = member.readyz(self.readiness.client)
            return bool(answer and answer["ready"] and (answer["assigned"] or not assigned))

        return wait_until(ready, timeout, 0.25)

    def fault(self) -> None:
        """Mark the moment the fault is injected (the stall is measured from here)."""
        self.fault_at, self.fault_wall = time.monotonic(), time.time()

    def healed(self) -> None:
        """Mark the heal (the link up, the node restarted, the roll over): recovery counts from here."""
        assert self.load is not None
        self.heal_at, self.heal_backlog = time.monotonic(), self.load.produced

    def recovered(self) -> None:
        """Wait until every upload produced before the heal is answered in both groups; the seconds
        from the heal each took are its time to recover (the fault's backlog drained)."""
        if not self.heal_at:
            self.healed()
        for group in self.groups.values():
            assert group.outputs.wait_answered(self.heal_backlog, 240), self.diagnose(
                group, f"{self.heal_backlog - group.outputs.answered()} uploads unanswered after the heal"
            )
            group.recover_s = time.monotonic() - self.heal_at

    def not_ready_during(self, member: Member, start: float, end: float) -> bool:
        return self.readiness.not_ready_during(member.name, start, end)

    def diagnose(self, group: Group, what: str) -> str:
        return (
            f"{group.mode}: {what}: answered {group.outputs.answered()}, committed {self.committed(group)},"
            f" input ends {self.input_ends()}, members alive"
            f" {[n for n, m in group.members.items() if m.process.alive]}; logs in {self.workdir}"
        )

    @contextmanager
    def _client(self, group: str = "cc-ends") -> Iterator[Consumer]:
        consumer = Consumer({**self.cluster.client_config(), "group.id": group})
        try:
            yield consumer
        finally:
            consumer.close()

    def input_ends(self) -> dict[int, int]:
        with self._client() as consumer:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self.input_topic, p), timeout=30)[1]
                for p in range(INPUT_PARTITIONS)
            }

    def output_ends(self, group: Group) -> dict[tuple[str, int], int]:
        topics = (group.topics["verdict_topic"], group.topics["dlq_topic"])
        with self._client() as consumer:
            return {
                (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30)[1]
                for t in topics
                for p in range(OUTPUT_PARTITIONS)
            }

    def committed(self, group: Group) -> dict[int, int]:
        with self._client(group.name) as consumer:
            parts = [TopicPartition(self.input_topic, p) for p in range(INPUT_PARTITIONS)]
            return {tp.partition: max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30)}

    def run(
        self,
        hosts: int,
        fault: Callable[[Scenario], None],
        report: Callable[[str], None],
        warm: int = 300,
    ) -> list[ScenarioResult]:
        """The whole scenario around ``fault`` (which injects, heals and waits on ``recovered``):
        a member of each group on each of the first ``hosts`` consumer hosts."""
        self.cluster.wait_healthy()
        self.load = Load(self.cluster, self.input_topic, seed=int(self.suffix, 16))
        with contextlib.ExitStack() as stack:
            stack.callback(self.load.halt)
            for group in self.groups.values():
                group.out = stack.enter_context(
                    ClusterOutputs(self.cluster, group.topics["verdict_topic"], group.topics["dlq_topic"])
                )
            stack.enter_context(self.readiness)
            return self._run(self.load, hosts, fault, report, warm)
        raise AssertionError("unreachable")  # for mypy: ExitStack may swallow exceptions

    def _run(
        self,
        load: Load,
        hosts: int,
        fault: Callable[[Scenario], None],
        report: Callable[[str], None],
        warm: int,
    ) -> list[ScenarioResult]:
        for group in self.groups.values():
            for i in range(hosts):
                self.start_member(group, "abc"[i], f"c{i + 1}")
        for member in self.members():
            assert self.wait_ready(member, assigned=False), f"member {member.name} never became ready"
        load.start()
        for group in self.groups.values():
            assert group.outputs.wait_answered(warm, 120), self.diagnose(
                group, "no progress before the fault"
            )
        fault(self)
        total = load.stop(MINIMUM_UPLOADS)
        for group in self.groups.values():
            assert group.outputs.wait_answered(total, 300), self.diagnose(
                group, f"{total - group.outputs.answered()} unanswered"
            )
        for member in self.members():
            if member.process.alive:
                assert self.wait_ready(member, 60, assigned=False), f"{member.name} not ready at the end"
        for member in self.members():
            if member.process.alive:
                assert member.process.terminate(60) == 0, f"{member.name} did not stop cleanly"
        sources: set[Source] = {(p, o) for p, end in self.input_ends().items() for o in range(end)}
        results = []
        for group in self.groups.values():
            if not group.exactly_once:  # read everything written (no transaction markers to wait on)
                assert group.outputs.caught_up(self.output_ends(group), 60)
            counts = group.outputs.accounting(sources)
            result = ScenarioResult(
                self.name,
                group.mode,
                counts,
                group.outputs.failed_closed,
                group.outputs.longest_stall(self.fault_wall - 1),
                group.recover_s,
                {m.name: self.readiness.not_ready_seconds(m.name) for m in group.members.values()},
                {**self.extra, **group.extra, "input_rewritten": counts.uploads - total},
            )
            report(result.line())
            result.save()
            results.append(result)
        for group, result in zip(self.groups.values(), results, strict=True):
            counts = result.accounting
            # the load's idempotent producer can still write a record twice across a broker restart
            # (seen in a rolling restart: 3 in 13,916); each copy is an input record of its own
            assert counts.uploads >= total, f"{counts.uploads} input records for {total} produced"
            assert counts.missing == 0, self.diagnose(group, f"{counts.missing} missing")
            assert counts.dead_letters == 0, (
                f"{group.mode}: {counts.dead_letters} dead letters caused by the fault"
            )
            if group.exactly_once:
                assert counts.duplicates == 0, f"{counts.duplicates} duplicates in exactly_once"
                assert self.committed(group) == self.input_ends()
        return results
