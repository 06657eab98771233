"""One three-node cluster, its hosts and a provider simulator for the whole session; each scenario
makes its own topics and group on it and starts from a healthy cluster (every replica in sync)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from moderation_devtools.cluster import KafkaCluster, Network
from moderation_devtools.stack import SimulatorProcess

from .harness import Scenario

MEMBER_HOSTS = 3


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    net = Network().start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="session")
def cluster(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    c = KafkaCluster(tmp_path_factory.mktemp("cluster"), network)
    try:
        c.start()
        for i in range(1, MEMBER_HOSTS + 1):
            network.add(f"c{i}", 10 + i, management=True)
        # the transaction state topic exists before any scenario (placements are computed from it)
        producer = Producer({**c.client_config(), "transactional.id": "cc-warm"})
        producer.init_transactions(60)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def simulator(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    # the providers answer after 20 ms (median), 120 ms at p99, as real ones would
    sim = SimulatorProcess(
        latency_median_ms=20,
        latency_p99_ms=120,
        host=network.services,
        log_path=tmp_path_factory.mktemp("simulator") / "simulator.log",
    ).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def scenario(
    cluster: KafkaCluster,
    network: Network,
    simulator: SimulatorProcess,
    tmp_path: Path,
) -> Iterator[Callable[[str], Scenario]]:
    """scenario(name): both delivery modes' groups on one input topic of the session's cluster;
    afterwards nothing is left cut, down or running, and its topics are deleted."""
    made: list[Scenario] = []

    def make(name: str) -> Scenario:
        s = Scenario(name, cluster, network, simulator, tmp_path)
        made.append(s)
        return s

    try:
        yield make
    finally:
        for host in network.hosts.values():  # a failed scenario must not leave a host cut or down
            if host.cut:
                network.heal(host.name)
        for s in made:
            for member in s.members():
                if member.process.alive:
                    member.process.kill()
        for node_id, node in cluster.nodes.items():
            if not node.alive:
                cluster.restart(node_id)
        for s in made:
            s.delete_topics()
