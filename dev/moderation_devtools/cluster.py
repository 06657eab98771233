"""A three-node Kafka cluster (KRaft, each node controller and broker) and the hosts around it, for
the cluster chaos suite (``make chaos-cluster``).

As root, every node and every consumer is a host of its own: a network namespace with an address on
a bridge, so setting its link down is a clean network partition and setting it up heals it. The
brokers and the consumers' Kafka links share the *cluster* bridge (10.77.0.0/24, the test process at
.254); each consumer also has a *management* link on a second bridge (10.78.0.0/24) where the test
process, the provider simulator and the readiness probes live, the way a pod keeps its kubelet and
its egress while the brokers are out of reach. Without root (a developer's laptop) every host is
127.0.0.1 on its own ports and a cut is ``SIGSTOP`` of the process (a pause: its peers and its
clients see it fall silent, as in a partition), a heal ``SIGCONT``.

Replication factor 3 and ``min.insync.replicas`` 2 everywhere (the offsets and transaction state
topics too), fast broker failure detection (``broker.session.timeout.ms`` 3 s) as in
``../shared/DESIGN.md`` section 5.

``python -m moderation_devtools.cluster start|stop [--dir .local/cluster]`` runs one by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.cimpl import NewTopic

from moderation_devtools.broker import BrokerError, LocalKafka, ensure_jars, free_port, new_cluster_id

__all__ = [
    "CLIENT_TIMEOUTS",
    "ClusterNode",
    "Host",
    "KafkaCluster",
    "Network",
    "java_string_hash",
    "main",
    "network_namespaces_available",
    "probe",
    "quorum_leader",
]

NODES = 3
CLUSTER_NET = "10.77.0"
MANAGEMENT_NET = "10.78.0"
PREFIX = "mcc"  # every namespace, bridge and link this module makes starts with it (and is swept)
TRANSACTION_STATE_PARTITIONS = 4
MAX_TOOL_OUTPUT = 64 << 10  # of Kafka's own command line tools' answers, what is read

# what every client of the cluster sets, so a cut link fails its requests in seconds, not the
# default 60 s (librdkafka's socket.timeout.ms), and an expelled member is noticed within 6 s
CLIENT_TIMEOUTS = {
    "socket.timeout.ms": "10000",
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "1000",
}


def network_namespaces_available() -> bool:
    """Root with iproute2: hosts are network namespaces (else loopback ports and SIGSTOP cuts;
    ``MODERATION_CLUSTER_NAMESPACES=0`` asks for loopback as root too)."""
    if os.environ.get("MODERATION_CLUSTER_NAMESPACES", "").lower() in {"0", "false", "no"}:
        return False
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BrokerError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    """One machine of the test network. ``address`` is where the cluster (brokers, consumers' Kafka
    clients) reaches it; ``management`` is where the test process reaches it (probes, metrics)."""

    name: str
    address: str
    management: str
    namespace: str | None = None
    cluster_link: str | None = None  # the bridge side of its cluster link: down = partitioned
    pids: set[int] = field(default_factory=set)  # loopback mode: the processes a cut pauses
    cut: bool = False

    @property
    def launcher(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace] if self.namespace else []


@dataclass
class Network:
    """The hosts: network namespaces on two bridges as root, else loopback (see the module doc)."""

    namespaces: bool = field(default_factory=network_namespaces_available)
    hosts: dict[str, Host] = field(default_factory=dict)
    _bridges: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """The test process's address on the cluster bridge."""
        return f"{CLUSTER_NET}.254" if self.namespaces else "127.0.0.1"

    @property
    def services(self) -> str:
        """The test process's address on the management bridge (the simulator listens there)."""
        return f"{MANAGEMENT_NET}.254" if self.namespaces else "127.0.0.1"

    def start(self) -> Network:
        if not self.namespaces:
            return self
        sweep()
        for bridge, net in ((f"{PREFIX}-k", CLUSTER_NET), (f"{PREFIX}-m", MANAGEMENT_NET)):
            _ip("link", "add", bridge, "type", "bridge")
            self._bridges.append(bridge)
            _ip("addr", "add", f"{net}.254/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
        return self

    def add(self, name: str, number: int, *, management: bool) -> Host:
        """A host ``name`` (short: it names links) at .``number`` of the nets; ``management``: a
        second link on the management bridge."""
        if not self.namespaces:
            host = Host(name, "127.0.0.1", "127.0.0.1")
            self.hosts[name] = host
            return host
        ns = f"{PREFIX}-{name}"
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        host = Host(name, f"{CLUSTER_NET}.{number}", f"{CLUSTER_NET}.{number}", namespace=ns)
        links = [("k", CLUSTER_NET, f"{PREFIX}-k")]
        if management:
            links.append(("m", MANAGEMENT_NET, f"{PREFIX}-m"))
            host.management = f"{MANAGEMENT_NET}.{number}"
        for kind, net, bridge in links:
            outside, inside = f"{PREFIX}{name}{kind}", f"{PREFIX}{name}{kind}i"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{net}.{number}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("link", "set", outside, "master", bridge, "up")
            if kind == "k":
                host.cluster_link = outside
        self.hosts[name] = host
        return host

    def cut(self, name: str) -> None:
        """Partition ``name`` from the cluster: its cluster link down (loopback: SIGSTOP)."""
        host = self.hosts[name]
        if host.cluster_link:
            _ip("link", "set", host.cluster_link, "down")
        else:
            self._signal(host, signal.SIGSTOP)
        host.cut = True

    def heal(self, name: str) -> None:
        host = self.hosts[name]
        if host.cluster_link:
            _ip("link", "set", host.cluster_link, "up")
        else:
            self._signal(host, signal.SIGCONT)
        host.cut = False

    @staticmethod
    def _signal(host: Host, sig: signal.Signals) -> None:
        for pid in list(host.pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:  # it exited since: nothing to pause or resume
                host.pids.discard(pid)

    def stop(self) -> None:
        for host in self.hosts.values():
            if host.cut:
                self.heal(host.name)
        if self.namespaces:
            sweep()
        self.hosts.clear()
        self._bridges.clear()


def sweep() -> None:
    """Remove every namespace and link of this module (a previous run's, killed before it could)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(f"{PREFIX}-"):
            _ip("netns", "del", ns, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        match = re.match(r"\d+: ([^:@]+)", line)
        if match and match.group(1).startswith(PREFIX):
            _ip("link", "del", match.group(1), check=False)


CLUSTER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions={txn_partitions}
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
replica.lag.time.max.ms=5000
log.retention.hours=24
log.segment.bytes=268435456
"""


@dataclass
class ClusterNode(LocalKafka):
    """One node of the cluster: controller and broker, on its host."""

    node_id: int = 1
    voters: str = ""

    def _properties(self) -> str:
        return CLUSTER_PROPERTIES.format(
            node_id=self.node_id,
            voters=self.voters,
            host=self.host,
            port=self.port,
            cport=self.controller_port,
            data=self.workdir / "data",
            txn_partitions=TRANSACTION_STATE_PARTITIONS,
        )

    def _format_args(self, cluster_id: str) -> list[str]:
        return [f"--cluster-id={cluster_id}"]  # static voters: no --standalone

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class KafkaCluster:
    """Three nodes in ``workdir`` on ``network``'s hosts ``k1``..``k3``."""

    workdir: Path
    network: Network
    heap: str = "384m"
    nodes: dict[int, ClusterNode] = field(default_factory=dict)
    _admin: AdminClient | None = field(default=None, init=False, repr=False)

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        hosts = {i: self.network.add(f"k{i}", i + 1, management=False) for i in range(1, NODES + 1)}
        ports = {i: (9092, 9093) if self.network.namespaces else (free_port(), free_port()) for i in hosts}
        voters = ",".join(f"{i}@{hosts[i].address}:{ports[i][1]}" for i in hosts)
        cluster_id = new_cluster_id()
        for i, host in hosts.items():
            node = ClusterNode(
                self.workdir / f"k{i}",
                port=ports[i][0],
                controller_port=ports[i][1],
                heap=self.heap,
                host=host.address,
                launcher=host.launcher,
                node_id=i,
                voters=voters,
            )
            self.nodes[i] = node
            node.start(cluster_id=cluster_id, wait=False)
            host.pids = {node.process.pid} if node.process else set()
        self.wait_healthy(timeout)
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def client_config(self) -> dict[str, Any]:
        from moderation_devtools.stack import QUIET

        return {"bootstrap.servers": self.bootstrap, "logger": QUIET, "socket.timeout.ms": 10000}

    def admin(self) -> AdminClient:
        """One Admin client for the cluster's life (a dropped one cancels its pending futures)."""
        if self._admin is None:
            self._admin = AdminClient(self.client_config())
        return self._admin

    # --- faults -------------------------------------------------------------------------------
    def kill(self, node_id: int) -> None:
        """``kill -9``: no controlled shutdown; the data stays and ``restart`` brings it back."""
        self.nodes[node_id].kill()

    def stop_node(self, node_id: int) -> None:
        """SIGTERM: a controlled shutdown (leadership moved away first), as an upgrade does."""
        self.nodes[node_id].stop(timeout=60)

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.start(wait=False)
        self.network.hosts[f"k{node_id}"].pids = {node.process.pid} if node.process else set()

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                node.kill()  # the whole cluster goes: nothing to hand over
        self.nodes.clear()
        self._admin = None

    # --- state --------------------------------------------------------------------------------
    def brokers(self) -> set[int]:
        """The brokers the cluster's metadata lists as alive (registered and fenced out when not)."""
        md = self.admin().list_topics(timeout=10)
        return set(md.brokers)

    def wait_fenced(self, node_id: int, timeout: float = 30.0) -> bool:
        """Wait until the cluster's metadata no longer lists ``node_id`` (its session expired)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if node_id not in self.brokers():
                    return True
            except Exception:  # the node asked may be the one away: ask again
                pass
            time.sleep(0.2)
        return False

    def partitions(self, topics: Iterable[str] | None = None) -> dict[tuple[str, int], Any]:
        md = self.admin().list_topics(timeout=10)
        wanted = set(topics) if topics is not None else None
        return {
            (name, p): part
            for name, topic in md.topics.items()
            if wanted is None or name in wanted
            for p, part in topic.partitions.items()
        }

    def leaders(self, topic: str) -> dict[int, int]:
        return {p: part.leader for (_, p), part in self.partitions([topic]).items()}

    def under_replicated(self) -> list[str]:
        """Partitions whose in-sync replicas are not all their replicas (or that have no leader)."""
        return [
            f"{t}[{p}] isr={sorted(part.isrs)} replicas={sorted(part.replicas)} leader={part.leader}"
            for (t, p), part in self.partitions().items()
            if part.leader < 0 or set(part.isrs) != set(part.replicas)
        ]

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Every node alive and registered, every partition fully in sync: the state a scenario
        starts from (ISR rejoin after a heal can take tens of seconds: waited on, never assumed)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        failing_since: float | None = None
        while time.monotonic() < deadline:
            dead = [i for i, node in self.nodes.items() if not node.alive]
            if dead:
                raise BrokerError(f"cluster nodes {dead} exited; see {self.workdir}/k*/server.log")
            try:
                brokers = self.brokers()
                lagging = self.under_replicated()
                failing_since = None
                if brokers == set(self.nodes) and not lagging:
                    return
                last = f"brokers {sorted(brokers)}, under-replicated {lagging[:5]}"
            except Exception as exc:  # still starting, or a node just came back: retry
                last = str(exc)
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > 10:
                    # seen after a rolling restart: the long-lived Admin client answered "Broker
                    # transport failure" for minutes while the cluster was fine; a new one asks afresh
                    self._admin, failing_since = None, None
            time.sleep(0.5)
        raise BrokerError(f"cluster not healthy after {timeout:.0f}s: {last}")

    def wait_in_sync(self, topics: Iterable[str], timeout: float = 90.0) -> None:
        """Every partition of ``topics`` has all its replicas in sync."""
        names = list(topics)
        deadline = time.monotonic() + timeout
        lagging: list[str] = []
        while time.monotonic() < deadline:
            try:
                parts = self.partitions(names)
                lagging = [
                    f"{t}[{p}]" for (t, p), part in parts.items() if set(part.isrs) != set(part.replicas)
                ]
                if parts and not lagging:
                    return
            except Exception:  # a broker is still coming back
                pass
            time.sleep(0.5)
        raise BrokerError(f"partitions not back in sync after {timeout:.0f}s: {lagging[:5]}")

    def active_controller(self) -> int:
        """The KRaft quorum's leader, from Kafka's own ``kafka-metadata-quorum`` tool."""
        java = shutil.which("java") or "java"
        proc = subprocess.run(
            [
                java,
                "-Xmx128m",
                "-cp",
                f"{ensure_jars()}/*",
                "org.apache.kafka.tools.MetadataQuorumCommand",
                "--bootstrap-server",
                self.bootstrap,
                "describe",
                "--status",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        leader = quorum_leader(proc.stdout)
        if leader is None:
            raise BrokerError(
                f"kafka-metadata-quorum: no LeaderId in {proc.stdout[-300:]!r}{proc.stderr[-300:]!r}"
            )
        return leader

    def group_assignment(self, group: str) -> dict[str, list[tuple[str, int]]]:
        """Each member's partitions in ``group``, by the member's ``client.id``."""
        future = self.admin().describe_consumer_groups([group], request_timeout=30)[group]
        description = future.result(60)
        return {
            m.client_id: [(tp.topic, tp.partition) for tp in m.assignment.topic_partitions]
            for m in description.members
        }

    def transaction_coordinator(self, transactional_id: str) -> int:
        """The node leading the transaction state partition of ``transactional_id`` (Kafka's
        ``abs(id.hashCode()) % partitions``)."""
        partition = (java_string_hash(transactional_id) & 0x7FFFFFFF) % TRANSACTION_STATE_PARTITIONS
        leaders = self.leaders("__transaction_state")
        if partition not in leaders:
            raise BrokerError("the transaction state topic does not exist yet")
        return leaders[partition]

    def create_topics(self, placement: dict[str, tuple[int, int]], settle_s: float = 60.0) -> None:
        """Topics by name: (partitions, preferred leader node or 0 for Kafka's spread), RF 3."""
        new = []
        for name, (count, leader) in placement.items():
            if leader:
                others = [n for n in sorted(self.nodes) if n != leader]
                new.append(NewTopic(name, count, replica_assignment=[[leader, *others]] * count))
            else:
                new.append(NewTopic(name, num_partitions=count, replication_factor=NODES))
        for future in self.admin().create_topics(new, operation_timeout=30).values():
            future.result(60)
        self.wait_in_sync(placement, settle_s)

    def set_topic_config(self, topic: str, **configs: str) -> None:
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
                for k, v in configs.items()
            ],
        )
        for future in self.admin().incremental_alter_configs([resource]).values():
            future.result(30)


MAX_PROBE_BYTES = 64 << 10


def probe(url: str, client: httpx.Client | None = None) -> dict[str, Any] | None:
    """A /readyz answer as a dict with ``ready`` (its status was 200), or None when there is no
    answer within a second or the body is not a JSON object of at most ``MAX_PROBE_BYTES``: a
    member that cannot answer its probe is not ready. ``client``: one kept for many probes (a
    client of its own per probe costs milliseconds of CPU to make)."""
    try:
        with contextlib.ExitStack() as owned:
            http = client or owned.enter_context(httpx.Client(timeout=1.0))
            with http.stream("GET", url, timeout=1.0) as answer:
                body = b""
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PROBE_BYTES:
                        return None
                status = answer.status_code
    except httpx.HTTPError:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {**parsed, "ready": status == 200, "assigned": parsed.get("assigned") or []}


def quorum_leader(status: str) -> int | None:
    """The ``LeaderId`` of ``kafka-metadata-quorum describe --status`` (None when it names none,
    or names a node id no cluster of ours has)."""
    match = re.search(r"^LeaderId:\s*(\d{1,9})\s*$", status[:MAX_TOOL_OUTPUT], re.MULTILINE)
    return int(match.group(1)) if match else None


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, as a signed 32-bit int)."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moderation_devtools.cluster", description=__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=Path(".local/cluster"))
    args = parser.parse_args(argv)
    workdir = args.dir.resolve()
    if args.action == "stop":
        for pid_file in workdir.glob("k*/kafka.pid"):
            LocalKafka.attach(pid_file.parent).stop()
        sweep() if network_namespaces_available() else None
        return 0
    try:
        cluster = KafkaCluster(workdir, Network().start()).start()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bootstrap": cluster.bootstrap, "namespaces": cluster.network.namespaces}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
