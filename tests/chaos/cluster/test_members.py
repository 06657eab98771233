"""Consumer members on hosts of their own under a steady load, both delivery modes at once: one host
cut off from every broker for longer than the members' session and healed (zombies: exactly_once
fences their late writes; they rejoin without a restart), and a rolling restart of the members."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .harness import STALL_AFTER_S, Scenario

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.cluster, pytest.mark.timeout(900)]

CUT_S = 12.0  # longer than the members' session timeout (6 s): the groups expel the cut members


def test_member_cut_off_from_every_broker_longer_than_its_session(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("member-cut-off")
    s.create_topics()

    def fault(s: Scenario) -> None:
        cut = {g.mode: g.on("c1") for g in s.groups.values()}  # one member of each group
        pids = {mode: m.process.process.pid if m.process.process else None for mode, m in cut.items()}
        before = {g.mode: g.outputs.answered() for g in s.groups.values()}
        s.fault()
        s.network.cut("c1")
        time.sleep(CUT_S)
        for g in s.groups.values():
            # the other two took its partitions over and went on answering while it was away
            g.extra["answered_while_cut"] = g.outputs.answered() - before[g.mode]
            g.extra["cut_not_ready"] = s.not_ready_during(
                cut[g.mode], s.fault_at + STALL_AFTER_S, time.monotonic()
            )
        s.network.heal("c1")
        s.healed()
        for g in s.groups.values():
            member = cut[g.mode]
            # it rejoins the group by itself (same process, no restart) and is given partitions again
            assert s.wait_ready(member, 90), f"the healed member {member.name} did not rejoin"
            g.extra["rejoined_s"] = round(time.monotonic() - s.heal_at, 1)
            process = member.process.process
            g.extra["same_process"] = (
                member.process.alive and process is not None and process.pid == pids[g.mode]
            )
        s.recovered()

    s.run(3, fault, accounting)
    for g in s.groups.values():
        assert g.extra["answered_while_cut"] > 0, g.mode
        assert g.extra["cut_not_ready"], g.mode
        assert g.extra["same_process"], g.mode


def test_rolling_restart_of_the_members(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("rolling-members")
    s.create_topics()

    def fault(s: Scenario) -> None:
        s.fault()
        for host, replacement in (("c1", "a2"), ("c2", "b2")):
            for g in s.groups.values():
                old = g.on(host)
                assert old.process.terminate(60) == 0, old.name  # SIGTERM: drain, commit, hand over, exit 0
                new = s.start_member(g, replacement, host)
                assert s.wait_ready(new, 60, assigned=False), f"{new.name} did not start"
        s.healed()
        s.recovered()

    s.run(2, fault, accounting)
