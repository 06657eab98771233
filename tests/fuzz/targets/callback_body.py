"""Callback bodies POSTed to the receiver by anyone who knows (or guesses) the callback URL: parsed
with a nesting bound, reduced and relayed; then what the relay listener does with what it reads
from the callback topic. Nothing may escape: a body is relayed or refused with an outcome."""

from __future__ import annotations

import orjson

from consumer.callbacks.bodies import (
    MAX_TASK_ID_LENGTH,
    RELAY_LIMIT_BYTES,
    is_too_large,
    prepare_relay,
    reduce_task_body,
    task_id_of,
)
from consumer.callbacks.relay import RELAY_SIGNATURE, relay_signature, signed

__all__ = ["test_one_input"]

_OUTCOMES = {"relayed", "reduced", "too_large", "invalid", "too_deep", "no_task_id"}
_KEY = b"callback-token"


def test_one_input(data: bytes) -> None:
    # a record on the callback topic that the receiver did not sign is refused, whatever it holds
    assert not signed(_KEY, data, [(RELAY_SIGNATURE, data[:64]), ("other", None)])
    decision = prepare_relay(data)
    assert decision.outcome in _OUTCOMES, decision.outcome
    if not decision.relay:
        return
    assert decision.task_id is not None and 0 < len(decision.task_id) <= MAX_TASK_ID_LENGTH
    assert len(decision.payload) <= RELAY_LIMIT_BYTES
    headers = [(RELAY_SIGNATURE, relay_signature(_KEY, decision.payload))]
    assert signed(_KEY, decision.payload, headers)  # the relay listener's side
    assert not signed(_KEY, decision.payload, headers * 2)
    body = orjson.loads(decision.payload)
    assert isinstance(body, dict)
    assert task_id_of(body) == decision.task_id
    if not is_too_large(body):
        assert reduce_task_body(body) == body  # a reduced body is a fixed point
