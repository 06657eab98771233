"""``consumer.callbacks.bodies``: what a callback body may be (size, depth, task id), what is kept of
it (the fields the Hive parsers read, in the same shape) and what is relayed."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.callbacks.bodies import (
    MAX_CALLBACK_DEPTH,
    MAX_TASK_ID_LENGTH,
    is_too_large,
    prepare_relay,
    reduce_task_body,
    task_id_of,
)

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)
OUTCOMES = {"relayed", "reduced", "too_large", "invalid", "too_deep", "no_task_id"}
KEYS = st.sampled_from(
    ["task_id", "id", "status", "response", "output", "classes", "class", "score", "code", "message", "x"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=40,
)
BODIES = st.fixed_dictionaries(
    {}, optional={"task_id": st.text(max_size=8) | st.integers(-(2**63), 2**63 - 1), "id": SCALARS}
).flatmap(lambda head: st.dictionaries(KEYS, JSON, max_size=5).map(lambda rest: {**rest, **head}))


def nested(depth: int) -> Any:
    """A body ``depth`` containers deep."""
    body: Any = {"id": "deep"}
    for _ in range(depth - 1):
        body = {"id": "deep", "x": body}
    return body


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _leaves_are_scalars(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _leaves_are_scalars(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_leaves_are_scalars(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


@PROPERTIES
@given(BODIES | JSON)
def test_any_json_gets_a_decision_and_a_relayed_payload_is_a_reduced_body_within_the_limit(body: Any) -> None:
    raw = orjson.dumps(body)
    decision = prepare_relay(raw, relay_limit_bytes=400)
    assert decision.outcome in OUTCOMES
    assert decision.relay == (decision.outcome in {"relayed", "reduced", "too_large"})
    if not decision.relay:
        assert decision.task_id is None and decision.payload == b""
        return
    relayed = orjson.loads(decision.payload)
    assert task_id_of(relayed) == decision.task_id  # the relay looks up the task the receiver validated
    assert decision.task_id is not None and 0 < len(decision.task_id) <= MAX_TASK_ID_LENGTH
    if decision.outcome == "too_large":
        assert is_too_large(relayed) and set(relayed) == {"task_id", "too_large"}
    else:
        assert len(decision.payload) <= 400
        assert relayed == reduce_task_body(body)
        assert not is_too_large(relayed)
        assert (decision.outcome == "relayed") == (relayed == body)


@PROPERTIES
@given(BODIES)
def test_reducing_keeps_the_shape_drops_the_rest_and_is_idempotent(body: dict[str, Any]) -> None:
    reduced = reduce_task_body(body)
    assert reduce_task_body(reduced) == reduced
    assert set(reduced) <= {"task_id", "id", "resent_on", "from_cache", "status", "response"}
    assert _leaves_are_scalars(reduced)
    assert _depth(reduced) <= _depth(body)
    for key in ("task_id", "id"):
        value = body.get(key)
        if value is None or isinstance(value, str | int | float | bool):
            assert reduced.get(key) == value


def test_a_container_where_a_scalar_belongs_becomes_a_placeholder() -> None:
    reduced = reduce_task_body({"id": {"nested": 1}, "status": {"code": [0], "message": "ok", "extra": 1}})
    assert reduced == {"id": "<dict>", "status": {"code": "<list>", "message": "ok"}}


def test_oversize_results_relay_only_the_marker() -> None:
    classes = [{"class": f"class_{i}", "score": 0.5, "padding": "x" * 100} for i in range(5_000)]
    body = {
        "id": "big",
        "status": [{"status": {"code": "0"}, "response": {"output": [{"classes": classes}]}}],
    }
    decision = prepare_relay(orjson.dumps(body), relay_limit_bytes=10_000)
    assert decision.outcome == "too_large" and decision.task_id == "big"
    assert orjson.loads(decision.payload) == {"task_id": "big", "too_large": True}
    # the padding alone was too much: without it, the same body is reduced and relayed
    assert prepare_relay(orjson.dumps(body)).outcome == "reduced"


def test_nesting_up_to_the_bound_is_read_and_past_it_refused() -> None:
    at_bound = orjson.dumps(nested(MAX_CALLBACK_DEPTH))
    assert prepare_relay(at_bound).outcome in {"relayed", "reduced"}
    assert prepare_relay(orjson.dumps(nested(MAX_CALLBACK_DEPTH + 1))).outcome == "too_deep"
    assert prepare_relay(at_bound, max_depth=10).outcome == "too_deep"
    # deeper than orjson itself reads: refused by the parser, still as too deep
    hostile = b'{"id":"d","x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    assert prepare_relay(hostile).outcome == "too_deep"


def test_malformed_bodies_are_invalid() -> None:
    for raw in (b"", b"{", b"\xff\xfe", b'{"id": "t"', b"nul\x00", b'{"id": "t"} trailing'):
        decision = prepare_relay(raw)
        assert decision.outcome == "invalid" and not decision.relay, raw


def test_bodies_without_a_usable_task_id_are_refused() -> None:
    for body in ([{"id": "t"}], "t", 7, {"id": True}, {"id": ""}, {"id": None}, {"id": 1.5}, {"x": 1}):
        assert prepare_relay(orjson.dumps(body)).outcome == "no_task_id", body
    assert prepare_relay(orjson.dumps({"task_id": "t" * (MAX_TASK_ID_LENGTH + 1)})).outcome == "no_task_id"
    assert prepare_relay(orjson.dumps({"task_id": "a\u0000b"})).outcome == "no_task_id"
    assert (
        prepare_relay(orjson.dumps({"task_id": "t" * MAX_TASK_ID_LENGTH})).task_id == "t" * MAX_TASK_ID_LENGTH
    )
    assert prepare_relay(orjson.dumps({"id": 42})).task_id == "42"


def test_a_task_id_that_is_no_scalar_is_refused_not_relayed_under_another_name() -> None:
    """``task_id: []`` with a usable ``id``: the relay would look up "<list>" and the waiting task
    would never complete; the body is refused like one without a task id."""
    for container in ([], {}, ["real-task"]):
        decision = prepare_relay(orjson.dumps({"task_id": container, "id": "real-task"}))
        assert decision.outcome == "no_task_id" and not decision.relay
    for absent in (None, ""):
        decision = prepare_relay(orjson.dumps({"task_id": absent, "id": "real-task"}))
        assert decision.relay and decision.task_id == "real-task"


def test_task_id_of_a_relayed_body() -> None:
    assert task_id_of({"task_id": "a", "id": "b"}) == "a"
    assert task_id_of({"id": 5}) == "5"
    assert task_id_of({}) is None
    assert not is_too_large({"too_large": "yes"}) and is_too_large({"too_large": True})
