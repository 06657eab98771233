"""Which checks an upload runs, and in what order: a plan per media type, narrowed to the checks
its tenant's policy runs."""

from __future__ import annotations

from dataclasses import dataclass

from consumer.checks.providers.http import ProviderGate
from consumer.checks.registry import CheckCall, CheckClient, CheckSpec, Feeds
from consumer.core.records import MediaType

__all__ = ["ActiveCheck", "Plan", "Step", "plan_for"]


@dataclass(frozen=True, slots=True)
class ActiveCheck:
    """A registered check as this deployment runs it: its declaration, its client, its gate."""

    spec: CheckSpec
    client: CheckClient
    gate: ProviderGate | None = None


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    feeds: Feeds
    call: CheckCall
    deadline_s: float


@dataclass(frozen=True, slots=True)
class Plan:
    """The checks one media type runs: ``first`` in turn, then ``rest`` together. ``live`` (a part
    of ``rest``) is asked again when the content's other results come from the cache."""

    first: tuple[Step, ...] = ()
    rest: tuple[Step, ...] = ()
    live: tuple[Step, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.first or self.rest)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(step.name for step in (*self.first, *self.rest))

    @property
    def key(self) -> str:
        """Its checks, for the result cache's key: results of one plan never answer another's."""
        return ",".join(step.name for step in (*self.first, *self.rest))

    def only(self, checks: frozenset[str]) -> Plan:
        """This plan without the checks not in ``checks``."""
        return Plan(
            tuple(s for s in self.first if s.name in checks),
            tuple(s for s in self.rest if s.name in checks),
            tuple(s for s in self.live if s.name in checks),
        )


def plan_for(
    checks: tuple[ActiveCheck, ...],
    kind: MediaType,
    asynchronous: bool,
    deadline_s: float,
    async_deadline_s: float,
) -> Plan:
    """The steps of a media type: async calls (and their deadline) where the deployment checks it
    through async tasks and the check has them."""
    first: list[Step] = []
    rest: list[Step] = []
    live: list[Step] = []
    for check in checks:
        spec, client = check.spec, check.client
        if kind not in spec.media_types:
            continue
        call, deadline = client.call, spec.deadline_s or deadline_s
        if asynchronous and client.call_async is not None:
            call, deadline = client.call_async, async_deadline_s
        step = Step(spec.name, spec.feeds, call, deadline)
        (first if spec.first else rest).append(step)
        if spec.live:
            live.append(step)
    return Plan(tuple(first), tuple(rest), tuple(live))
