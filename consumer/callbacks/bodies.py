"""Callback bodies (pure): the bounds a callback must keep, the fields a Hive result is read for
(``reduce_task_body``: the same shape, nothing else), and what the receiver relays
(``prepare_relay``: the reduced body, or a ``too_large`` marker that makes the waiter poll)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "EARLY_LIMIT_BYTES",
    "INLINE_PARSE_BYTES",
    "MAX_CALLBACK_BYTES",
    "MAX_CALLBACK_DEPTH",
    "MAX_TASK_ID_LENGTH",
    "RELAY_LIMIT_BYTES",
    "Body",
    "RelayDecision",
    "is_too_large",
    "prepare_relay",
    "reduce_task_body",
    "task_id_of",
]

Body = dict[str, Any]
MAX_CALLBACK_BYTES = 4 << 20  # the receiver's body limit (also the aiohttp app's client_max_size)
MAX_CALLBACK_DEPTH = 64  # Hive task bodies nest about 8 levels
RELAY_LIMIT_BYTES = 900_000  # below Kafka's default 1 MB message limit
EARLY_LIMIT_BYTES = 32 << 20
MAX_TASK_ID_LENGTH = 256
INLINE_PARSE_BYTES = 64 << 10  # larger bodies are parsed and reduced off the event loop


def _named(body: Mapping[str, Any]) -> Any:
    """``task_id``, or ``id`` when ``task_id`` is absent, null or empty: one reading for the receiver
    that validates a body and the relay that looks its task up."""
    value = body.get("task_id")
    return body.get("id") if value is None or value == "" else value


def task_id_of(body: Mapping[str, Any]) -> str | None:
    value = _named(body)
    return None if value is None else str(value)


def is_too_large(body: Mapping[str, Any]) -> bool:
    """The relayed marker of a callback whose result was too large to relay."""
    return body.get("too_large") is True


@dataclass(frozen=True, slots=True)
class RelayDecision:
    """What to do with one callback body: relay ``payload`` (keyed by ``task_id``) or refuse it."""

    outcome: str  # relayed, reduced, too_large | invalid, too_deep, no_task_id
    payload: bytes = b""
    task_id: str | None = None

    @property
    def relay(self) -> bool:
        return bool(self.payload)


def prepare_relay(
    raw: bytes, *, max_depth: int = MAX_CALLBACK_DEPTH, relay_limit_bytes: int = RELAY_LIMIT_BYTES
) -> RelayDecision:
    """Parse a callback body with a nesting bound and reduce it to what the parsers read (pure)."""
    try:
        body = orjson.loads(raw)  # orjson itself refuses nesting past 1024 and never recurses in Python
    except orjson.JSONDecodeError as exc:
        return RelayDecision("too_deep" if "depth" in str(exc) else "invalid")
    if not _within_depth(body, max_depth):
        return RelayDecision("too_deep")
    task_id = _task_id(body)
    if task_id is None:
        return RelayDecision("no_task_id")
    reduced = reduce_task_body(body)
    payload = orjson.dumps(reduced)
    if len(payload) > relay_limit_bytes:
        return RelayDecision("too_large", orjson.dumps({"task_id": task_id, "too_large": True}), task_id)
    return RelayDecision("relayed" if reduced == body else "reduced", payload, task_id)


def _within_depth(value: Any, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep (level by level, no recursion)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        if not level:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
    return not level


def _task_id(body: Any) -> str | None:
    """The task id of a callback body, if it has a usable one (a short string or an integer)."""
    if not isinstance(body, dict):
        return None
    value = _named(body)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    task_id = str(value)
    return task_id if 0 < len(task_id) <= MAX_TASK_ID_LENGTH and task_id.isprintable() else None


# --- the reduced body: only what consumer.providers.hive reads, in the same shape ---------------

_Leaf = str | int | float | bool | None
_TOP = ("task_id", "id", "resent_on", "from_cache")
_STATUS = ("code", "message")
_INPUT = ("model", "model_version")
_OUTPUT_ITEM = ("time", "shaHash", "id")
_CLASS = ("class", "score")
_HASH = ("hashType",)
_HASH_MATCH = ("matchDistance",)
_SCENE = ("startTimestamp", "endTimestamp")
_INDEX_MATCH = ("id", "similarity_score", "metadata", "url")


def reduce_task_body(body: Mapping[str, Any]) -> Body:
    """The fields of a Hive task body that the parsers read (task id, status codes and messages,
    model, frames' times and classes, hash matches with scenes, index matches, shaHash, id, and
    ``resent_on``/``from_cache``), in the same shape, so they read it unchanged. A container where
    a scalar belongs becomes a placeholder string, so a malformed status never reads as success."""
    reduced = _leaves(body, _TOP)
    status = body.get("status")
    if isinstance(status, list):
        reduced["status"] = [_status_entry(e) if isinstance(e, Mapping) else _leaf(e) for e in status]
    elif isinstance(status, Mapping):
        reduced["status"] = _leaves(status, _STATUS)
    elif "status" in body:
        reduced["status"] = _leaf(status)
    if not isinstance(status, list) and "response" in body:
        reduced["response"] = _response(body["response"])
    return reduced


def _status_entry(entry: Mapping[str, Any]) -> Body:
    out: Body = {}
    if "status" in entry:
        inner = entry["status"]
        out["status"] = _leaves(inner, _STATUS) if isinstance(inner, Mapping) else _leaf(inner)
    if "response" in entry:
        out["response"] = _response(entry["response"])
    return out


def _response(response: Any) -> Any:
    if not isinstance(response, Mapping):
        return _leaf(response)
    out: Body = {}
    if "input" in response:
        inp = response["input"]
        out["input"] = _leaves(inp, _INPUT) if isinstance(inp, Mapping) else _leaf(inp)
    if "output" in response:
        output = response["output"]
        out["output"] = _output_item(output) if isinstance(output, Mapping) else _items(output, _output_item)
    return out


def _output_item(item: Mapping[str, Any]) -> Body:
    out = _leaves(item, _OUTPUT_ITEM)
    if "classes" in item:
        out["classes"] = _items(item["classes"], lambda c: _leaves(c, _CLASS))
    if "hashes" in item:
        out["hashes"] = _items(item["hashes"], _hash)
    if "matches" in item:
        out["matches"] = _items(item["matches"], lambda m: _leaves(m, _INDEX_MATCH))
    return out


def _hash(entry: Mapping[str, Any]) -> Body:
    out = _leaves(entry, _HASH)
    if "matches" in entry:
        out["matches"] = _items(entry["matches"], _hash_match)
    return out


def _hash_match(match: Mapping[str, Any]) -> Body:
    out = _leaves(match, _HASH_MATCH)
    if "scenes" in match:
        out["scenes"] = _items(match["scenes"], lambda scene: _leaves(scene, _SCENE))
    return out


def _items(value: Any, reduce: Callable[[Mapping[str, Any]], Body]) -> Any:
    """A list whose mappings are reduced (anything else in it a leaf); a non-list, a leaf."""
    if not isinstance(value, list):
        return _leaf(value)
    return [reduce(v) if isinstance(v, Mapping) else _leaf(v) for v in value]


def _leaves(mapping: Mapping[str, Any], keys: Iterable[str]) -> Body:
    return {key: _leaf(mapping[key]) for key in keys if key in mapping}


def _leaf(value: Any) -> _Leaf:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return f"<{type(value).__name__}>"
