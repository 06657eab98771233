"""Consumer members on hosts of their own, in both delivery modes under a steady load: one cut off
from every broker for longer than its session and healed (a zombie: exactly_once fences its late
writes; it rejoins without a restart), and a rolling restart of the members."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .harness import STALL_AFTER_S, ClusterOutputs, Load, Scenario

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.cluster, pytest.mark.timeout(900)]

CUT_S = 15.0  # longer than the members' session timeout (6 s): the group expels the cut member


def test_member_cut_off_from_every_broker_longer_than_its_session(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("member-cut-off")
    s.create_topics()

    def fault(s: Scenario, out: ClusterOutputs, load: Load) -> None:
        cut = s.members["a"]
        pid = cut.process.process.pid if cut.process.process else None
        before = out.answered()
        s.fault()
        s.network.cut(cut.host.name)
        time.sleep(CUT_S)
        # the other two took its partitions over and went on answering while it was away
        s.extra["answered_while_cut"] = out.answered() - before
        s.extra["cut_not_ready"] = s.readiness.not_ready_during(
            "a", s.fault_at + STALL_AFTER_S, time.monotonic()
        )
        s.network.heal(cut.host.name)
        s.healed(load)
        healed = time.monotonic()
        # it rejoins the group by itself (same process, no restart) and is given partitions again
        assert s.wait_ready("a", 90), "the healed member did not rejoin"
        s.extra["rejoined_s"] = round(time.monotonic() - healed, 1)
        s.extra["same_process"] = (
            cut.process.alive and cut.process.process is not None and cut.process.process.pid == pid
        )
        s.recovered_after(out, load)

    s.run(["a", "b", "c"], fault, accounting)
    assert s.extra["answered_while_cut"] > 0
    assert s.extra["cut_not_ready"]
    assert s.extra["same_process"]


def test_rolling_restart_of_the_members(
    scenario: Callable[[str], Scenario], accounting: Callable[[str], None]
) -> None:
    s = scenario("rolling-members")
    s.create_topics()

    def fault(s: Scenario, out: ClusterOutputs, load: Load) -> None:
        s.fault()
        for old in ["a", "b"]:
            member = s.members[old]
            assert member.process.terminate(60) == 0  # SIGTERM: drain, commit, hand over, exit 0
            new = f"{old}2"
            s.start_member(new, member.host.name)
            assert s.wait_ready(new, 60, assigned=False), f"{new} did not start"
        s.healed(load)
        s.recovered_after(out, load)

    s.run(["a", "b"], fault, accounting)
