"""``consumer.checks.plans``: which checks a media type runs, in which order, with which call and
deadline, and what a tenant's narrowing keeps."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.checks.plans import ActiveCheck, Plan, plan_for
from consumer.checks.registry import CheckClient, CheckSpec, Feeds, Subject
from consumer.core.records import MediaType, UploadEvent

PROPERTIES = settings(max_examples=200, deadline=None, derandomize=True, database=None)
DEADLINE_S, ASYNC_DEADLINE_S = 5.0, 600.0


async def _sync(subject: Subject) -> Any:
    return "sync"


async def _async(subject: Subject) -> Any:
    return "async"


def active(
    name: str,
    kinds: frozenset[MediaType],
    *,
    first: bool = False,
    live: bool = False,
    deadline_s: float | None = None,
    has_async: bool = False,
) -> ActiveCheck:
    spec = CheckSpec(
        name,
        Feeds.CLASSIFICATION,
        kinds,
        build=lambda context: None,
        first=first,
        live=live,
        deadline_s=deadline_s,
    )
    return ActiveCheck(spec, CheckClient("fake", _sync, call_async=_async if has_async else None))


def plan(checks: list[ActiveCheck], kind: MediaType, asynchronous: bool = False) -> Plan:
    return plan_for(tuple(checks), kind, asynchronous, DEADLINE_S, ASYNC_DEADLINE_S)


IMAGE_VIDEO = frozenset({MediaType.IMAGE, MediaType.VIDEO})


def test_a_plan_keeps_the_checks_of_its_media_type_first_ones_apart_in_declared_order() -> None:
    checks = [
        active("text_only", frozenset({MediaType.TEXT})),
        active("visual", IMAGE_VIDEO),
        active("csam", IMAGE_VIDEO, first=True),
        active("similarity", frozenset({MediaType.IMAGE}), live=True),
    ]
    image = plan(checks, MediaType.IMAGE)
    assert [s.name for s in image.first] == ["csam"]
    assert [s.name for s in image.rest] == ["visual", "similarity"]
    assert [s.name for s in image.live] == ["similarity"]
    assert image.names == {"csam", "visual", "similarity"}
    assert image.key == "csam,visual,similarity"
    video = plan(checks, MediaType.VIDEO)
    assert video.names == {"csam", "visual"} and not video.live
    text = plan(checks, MediaType.TEXT)
    assert text and text.key == "text_only"


def test_no_check_for_a_media_type_is_an_empty_plan() -> None:
    empty = plan([active("visual", IMAGE_VIDEO)], MediaType.TEXT)
    assert not empty and empty.key == "" and empty.names == frozenset()
    assert not Plan()


async def test_async_calls_and_their_deadline_only_where_the_deployment_and_the_check_have_them() -> None:
    checks = [
        active("visual", IMAGE_VIDEO, has_async=True, deadline_s=2.0),
        active("csam", IMAGE_VIDEO, first=True, deadline_s=3.0),
    ]
    synchronous = plan(checks, MediaType.VIDEO, asynchronous=False)
    (visual,) = synchronous.rest
    assert visual.deadline_s == 2.0  # the check's own deadline overrides the default
    assert await visual.call(_subject()) == "sync"
    asynchronous = plan(checks, MediaType.VIDEO, asynchronous=True)
    (visual,) = asynchronous.rest
    assert visual.deadline_s == ASYNC_DEADLINE_S
    assert await visual.call(_subject()) == "async"
    (csam,) = asynchronous.first  # no async call: synchronous, with its own deadline
    assert csam.deadline_s == 3.0 and await csam.call(_subject()) == "sync"
    default = plan([active("plain", IMAGE_VIDEO)], MediaType.IMAGE)
    assert default.rest[0].deadline_s == DEADLINE_S


def _subject() -> Subject:
    return Subject(UploadEvent("u-1", "acme", "user", MediaType.TEXT, 0, text="hello"), None)


NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
DECLARED = st.lists(
    st.tuples(
        NAMES,
        st.sampled_from(["first", "rest", "live"]),
        st.sets(st.sampled_from(list(MediaType)), min_size=1),
    ),
    unique_by=lambda t: t[0],
    max_size=6,
)


def _checks(declared: list[tuple[str, str, set[MediaType]]]) -> list[ActiveCheck]:
    return [
        active(name, frozenset(kinds), first=role == "first", live=role == "live")
        for name, role, kinds in declared
    ]


@PROPERTIES
@given(DECLARED, st.sampled_from(list(MediaType)), st.sets(NAMES))
def test_narrowing_keeps_exactly_the_named_checks_in_their_order(
    declared: list[tuple[str, str, set[MediaType]]], kind: MediaType, keep: set[str]
) -> None:
    full = plan(_checks(declared), kind)
    narrowed = full.only(frozenset(keep))
    assert narrowed.names == full.names & keep
    assert [s.name for s in narrowed.first] == [s.name for s in full.first if s.name in keep]
    assert [s.name for s in narrowed.rest] == [s.name for s in full.rest if s.name in keep]
    assert {s.name for s in narrowed.live} <= {s.name for s in narrowed.rest}
    assert full.only(full.names) == full
    assert not full.only(frozenset())


@PROPERTIES
@given(DECLARED, st.sampled_from(list(MediaType)))
def test_a_plan_runs_each_applicable_check_once_and_its_key_names_them(
    declared: list[tuple[str, str, set[MediaType]]], kind: MediaType
) -> None:
    full = plan(_checks(declared), kind)
    applicable = [name for name, _, kinds in declared if kind in kinds]
    assert sorted(full.key.split(",") if full.key else []) == sorted(applicable)
    assert len(full.first) + len(full.rest) == len(applicable)
    assert bool(full) == bool(applicable)
