"""Broker faults on the three-node cluster under a steady load, each met by both delivery modes at
once (a group of each on one input topic): every upload answered (exactly one verdict for a
read_committed reader in exactly_once, at least one in at_least_once), no dead letter caused by the
fault, every member ready again after it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from moderation_devtools.stack import wait_until

from .harness import STALL_AFTER_S, Scenario

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.cluster, pytest.mark.timeout(900)]

HOSTS = 2  # members of each group, each on a host of its own
DOWN_S = 8.0  # how long a lost node stays away: longer than the brokers' session (3 s) and a
# member's (6 s), so leadership moves and the cluster runs on two nodes for a while


def test_input_leader_killed_mid_stream(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("input-leader-killed")
    s.create_topics(input_leader=1)

    def fault(s: Scenario) -> None:
        s.fault()
        s.cluster.kill(1)  # leads every input partition
        assert s.cluster.wait_fenced(1)
        s.extra["input_leaders_after"] = sorted(set(s.cluster.leaders(s.input_topic).values()))
        time.sleep(DOWN_S)  # the cluster runs on two nodes under load for a while
        s.cluster.restart(1)
        s.healed()
        s.recovered()

    s.run(HOSTS, fault, accounting)
    assert 1 not in s.extra["input_leaders_after"]


def test_verdict_leader_and_transaction_coordinator_killed_mid_transaction(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("coordinator-killed")
    # the node coordinating the exactly_once member a's transactions also leads every output
    # partition: its death takes an open transaction's coordinator and the partitions it writes to
    victim = s.cluster.transaction_coordinator(s.transactional_id(s.eos, "a"))
    s.create_topics(output_leader=victim)
    s.extra["killed"] = victim

    def fault(s: Scenario) -> None:
        s.fault()
        s.cluster.kill(victim)  # under this load a transaction (or a produce) is always open
        time.sleep(DOWN_S)
        s.cluster.restart(victim)
        s.healed()
        s.recovered()

    s.run(HOSTS, fault, accounting)


def test_verdict_replicas_below_min_insync_stall_and_resume(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("isr-below-min")
    s.create_topics(input_leader=1, output_leader=1)
    verdicts = s.output_topics("verdict")
    held_s = 12.0
    timelines: dict[str, str] = {}

    def fault(s: Scenario) -> None:
        # min.insync.replicas 3 on the verdict topics and one replica lost is the state of a topic at
        # min.insync.replicas 2 that lost two, without losing two controllers of three as well
        for topic in verdicts:
            s.cluster.set_topic_config(topic, min_insync_replicas="3")
        for g in s.groups.values():
            # the members that own input partitions are the ones the outage stops: a member given
            # only the group's other topics (review decisions, deletions) has nothing held up
            owners = s.cluster.group_assignment(g.name)
            g.extra["input_owners"] = sorted(
                m for m, parts in owners.items() if any(t == s.input_topic for t, _ in parts)
            )
        s.fault()
        s.cluster.kill(3)
        assert wait_until(lambda: all(3 not in p.isrs for p in s.cluster.partitions(verdicts).values()), 30)
        shrunk = time.monotonic()
        before = {g.mode: s.output_ends(g) for g in s.groups.values()}
        time.sleep(held_s)
        for g in s.groups.values():
            after = s.output_ends(g)
            # producing stalled: nothing was appended to the verdict topic while the ISR was short
            g.extra["appended_while_short"] = sum(
                after[k] - before[g.mode][k] for k in after if k[0] == g.topics["verdict_topic"]
            )
            now = time.monotonic()
            g.extra["not_ready"] = sorted(
                m.name for m in g.members.values() if s.not_ready_during(m, shrunk + STALL_AFTER_S, now)
            )
            for m in g.members.values():  # kept for a failure's message, not reported
                timelines[m.name] = s.readiness.timeline(m.name, shrunk, now)
        s.cluster.restart(3)
        s.healed()
        s.cluster.wait_in_sync(verdicts)
        s.recovered()

    s.run(HOSTS, fault, accounting)
    for g in s.groups.values():
        assert g.extra["appended_while_short"] == 0, g.mode
        owners = g.extra["input_owners"]
        assert owners, f"{g.mode}: no member owned the input"
        assert set(owners) <= set(g.extra["not_ready"]), (
            f"{g.mode}: /readyz said ready while stuck: {timelines}"
        )


def test_broker_cut_off_from_its_peers_then_healed(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("broker-isolated")
    s.create_topics(input_leader=2, output_leader=2)

    def fault(s: Scenario) -> None:
        s.fault()
        s.network.cut("k2")  # leads everything of this scenario; still runs, reaches no one
        assert s.cluster.wait_fenced(2)
        time.sleep(DOWN_S)
        s.network.heal("k2")
        s.healed()
        s.cluster.wait_healthy()  # it catches up and rejoins every ISR (waited on, never assumed)
        s.extra["isr_rejoin_s"] = round(time.monotonic() - s.heal_at, 1)
        s.recovered()

    s.run(HOSTS, fault, accounting)


def test_one_controller_of_three_lost(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("controller-lost")
    s.create_topics()

    def fault(s: Scenario) -> None:
        victim = s.cluster.active_controller()
        s.extra["killed"] = victim
        s.fault()
        s.cluster.kill(victim)  # the quorum's leader: the other two elect a new one
        assert s.cluster.wait_fenced(victim)
        s.extra["new_controller"] = s.cluster.active_controller()
        time.sleep(DOWN_S)
        s.cluster.restart(victim)
        s.healed()
        s.recovered()

    s.run(HOSTS, fault, accounting)
    assert s.extra["new_controller"] != s.extra["killed"]


def test_rolling_restart_of_every_broker(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("rolling-brokers")
    s.create_topics()

    def fault(s: Scenario) -> None:
        s.fault()
        took = []
        for node_id in sorted(s.cluster.nodes):
            started = time.monotonic()
            s.cluster.stop_node(node_id)  # SIGTERM: a controlled shutdown, as an upgrade does
            s.cluster.restart(node_id)
            s.cluster.wait_healthy()  # the next one only when every replica is back in sync
            took.append(round(time.monotonic() - started, 1))
        s.extra["per_broker_s"] = "/".join(map(str, took))
        s.healed()
        s.recovered()

    s.run(HOSTS, fault, accounting)
