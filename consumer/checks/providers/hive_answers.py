"""Hive answers, parsed (pure): HTTP status and task codes to the error tree through the
``HIVE_ERRORS`` table (``hive_errors``), and the documented shapes of task and custom-index bodies,
checked field by field.

Tolerant of both ``status.code`` forms ("0" and 200), of a status list (task API), one status
object (custom index) or none. Anything else a provider answers with status 200 (a field missing,
of the wrong type or out of range) is a ``ProviderAnswerError`` naming the field's path, never its
value. Messages built from a provider's body go through the caller's ``Redactor``
(``answers.error_for``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from consumer.checks.providers import CsamAnswer
from consumer.checks.providers.answers import (
    HttpAnswer,
    answer_error,
    error_for,
    is_text,
    json_or,
    provider_words,
    raise_for_answer,
    unit,
)
from consumer.checks.providers.hive_errors import HIVE_ERRORS
from consumer.checks.redaction import Redactor
from consumer.core.records import CsamResult, SimilarityMatch, TimeRange
from consumer.errors import ProviderAnswerError
from consumer.policy.decision import Frame

__all__ = [
    "HIVE_ERRORS",
    "HttpAnswer",
    "added_id",
    "as_is",
    "check_response",
    "model_of",
    "parse_classification",
    "parse_csam",
    "parse_matches",
    "raise_task_error",
    "removed_id",
    "task_id_of_ack",
]

PROVIDER = "hive"
_NOT_JSON = object()


def check_response(
    resp: HttpAnswer, check: str, *, redactor: Redactor, task_errors: bool = True
) -> dict[str, Any]:
    """Map an HTTP answer to a body or an error of the tree (no secrets in messages: ``redactor``)."""
    body = json_or(resp.content, _NOT_JSON)
    words = provider_words(resp, body, "message", "error")
    raise_for_answer(HIVE_ERRORS, resp, check, redactor=redactor, message=words)
    if body is _NOT_JSON:
        raise ProviderAnswerError(f"{check}: Hive answered 200 with a body that is not JSON", check=check)
    if not isinstance(body, dict):
        raise _bad(check, "body", "is not an object")
    if task_errors:
        raise_task_error(body, check, redactor=redactor)
    return body


# --- answer shapes -------------------------------------------------------------------------------
# Explicit type checks (cheaper than a schema library on this hot path). Errors name the field's
# path, never its value; paths are built only when a check fails.

_MAX_INT = 2**53  # larger JSON integers lose precision as floats
_MAX_INT32 = 2**31 - 1  # Avro int fields of the verdict (match_distance)
_NAME_LIMIT = 256  # class names, hash types, model names and versions
_TEXT_LIMIT = 8192  # match ids, metadata, urls
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")  # one URL path segment, nothing more


def _bad(check: str, where: str, problem: str) -> ProviderAnswerError:
    return answer_error("Hive", check, where, problem)


def _seconds(value: Any) -> float | None:
    """A time: a finite number >= 0 (not a bool), as a float; else None."""
    if type(value) is float:
        return value if 0.0 <= value < math.inf else None
    if type(value) is int and 0 <= value <= _MAX_INT:
        return float(value)
    return None


class _Entry(NamedTuple):
    """One task status of an answer: where it sits, its status object and its response."""

    where: str  # "status[0]" in the task API's list, "" for a status beside a top-level response
    status: dict[str, Any] | None
    response: Any

    def path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name


def _statuses(body: Mapping[str, Any], check: str = "") -> list[_Entry]:
    """The task status entries: a list of them (task API), one status object beside ``response``
    (custom index), or no status at all (success)."""
    status = body.get("status")
    if isinstance(status, list):
        if not status:
            raise _bad(check, "status", "is an empty list")
        entries = []
        for i, entry in enumerate(status):
            if not isinstance(entry, dict):
                raise _bad(check, f"status[{i}]", "is not an object")
            inner = entry.get("status")
            if inner is not None and not isinstance(inner, dict):
                raise _bad(check, f"status[{i}].status", "is not an object")
            entries.append(_Entry(f"status[{i}]", inner, entry.get("response")))
        return entries
    if status is None or isinstance(status, dict):
        return [_Entry("", status, body.get("response"))]
    raise _bad(check, "status", "is not a list or an object")


def _code(entry: _Entry, check: str) -> str:
    """The entry's status code as text ("0" when absent): Hive sends "0", 0, 200 or "200" for success."""
    code = None if entry.status is None else entry.status.get("code")
    if code is None:
        return "0"
    if type(code) is int and 0 <= code <= 999_999:
        return str(code)
    if type(code) is str and 0 < len(code) <= 6 and code.isascii() and code.isdigit():
        return code
    raise _bad(check, entry.path("status.code"), "is not a numeric code")


def raise_task_error(body: Mapping[str, Any], check: str, *, redactor: Redactor) -> None:
    """The first task status whose code ``HIVE_ERRORS`` maps to an error, raised."""
    for entry in _statuses(body, check):
        text = None if entry.status is None else entry.status.get("message")
        message = text if isinstance(text, str) else ""
        error = error_for(HIVE_ERRORS, check, redactor=redactor, code=_code(entry, check), message=message)
        if error is not None:
            raise error


def _response(body: Mapping[str, Any], check: str = "") -> tuple[str, dict[str, Any]]:
    """The first entry's response object and its path."""
    entry = _statuses(body, check)[0]
    where = entry.path("response")
    if not isinstance(entry.response, dict):
        raise _bad(check, where, "is missing or not an object")
    return where, entry.response


def model_of(body: Mapping[str, Any], check: str = "") -> tuple[str | None, str | None]:
    where, response = _response(body, check)
    inp = response.get("input")
    if inp is None:
        return None, None
    if not isinstance(inp, dict):
        raise _bad(check, f"{where}.input", "is not an object")
    model, version = inp.get("model"), inp.get("model_version")
    if model is not None and not is_text(model, _NAME_LIMIT):
        raise _bad(check, f"{where}.input.model", "is not a string")
    if version is None:
        return model, None
    if type(version) is int:
        return model, str(version)
    if not is_text(version, _NAME_LIMIT):
        raise _bad(check, f"{where}.input.model_version", "is not a string or an integer")
    return model, version


def _output(body: Mapping[str, Any], check: str = "") -> tuple[str, Any]:
    """The first entry's output (required) and its path."""
    where, response = _response(body, check)
    output = response.get("output")
    if output is None:
        raise _bad(check, f"{where}.output", "is missing")
    return f"{where}.output", output


def _items(body: Mapping[str, Any], check: str) -> tuple[str, list[Any], bool]:
    """Output items, their path and whether the output was a list (else one object)."""
    where, output = _output(body, check)
    if isinstance(output, list):
        return where, output, True
    if isinstance(output, dict):
        return where, [output], False
    raise _bad(check, where, "is not a list or an object")


def _frame(item: Any, check: str, where: str) -> Frame:
    """One output item's time and class scores; ``where`` is the item's path."""
    if not isinstance(item, dict):
        raise _bad(check, where, "is not an object")
    raw_time = item.get("time")
    time = 0.0 if raw_time is None else _seconds(raw_time)
    if time is None:
        raise _bad(check, f"{where}.time", "is not a finite number >= 0")
    classes = item.get("classes")
    if classes is None:
        return Frame(time, {})
    if not isinstance(classes, list):
        raise _bad(check, f"{where}.classes", "is not a list")
    scores: dict[str, float] = {}
    for j, entry in enumerate(classes):  # inlined checks: ~100 classes per frame, per call
        if type(entry) is not dict:
            raise _bad(check, f"{where}.classes[{j}]", "is not an object")
        name, score = entry.get("class"), entry.get("score")
        if not (type(name) is str and name.isascii() and len(name) <= _NAME_LIMIT) and not is_text(
            name, _NAME_LIMIT
        ):
            raise _bad(check, f"{where}.classes[{j}].class", "is not a string")
        if type(score) is not float or not 0.0 <= score <= 1.0:  # NaN fails the comparison
            score = unit(score)
            if score is None:
                raise _bad(check, f"{where}.classes[{j}].score", "is not a number in [0, 1]")
        scores[name] = score
    return Frame(time, scores)


def _item_path(where: str, index: int, listed: bool) -> str:
    return f"{where}[{index}]" if listed else where


def parse_classification(body: Mapping[str, Any], *, check: str = "") -> list[Frame]:
    """Every output item must carry class scores: a classifier's answer without any cannot be told
    from a benign one, so it is an error (fail closed), never an empty result (ALLOW)."""
    where, items, listed = _items(body, check)
    frames = [_frame(item, check, _item_path(where, i, listed)) for i, item in enumerate(items)]
    if not frames:
        raise _bad(check, where, "holds no output item")
    for i, frame in enumerate(frames):
        if not frame.scores:
            raise _bad(check, f"{_item_path(where, i, listed)}.classes", "holds no class scores")
    return _marked(frames)


def _marked(frames: list[Frame]) -> list[Frame]:
    """``frames`` with their benign classes marked: Hive names the class that says a head found
    nothing ``no_<x>``, ``not_<x>`` or ``<x>_not_<y>`` (``no_gun``, ``general_not_nsfw_not_suggestive``)."""
    names = frames[0].scores if len(frames) == 1 else set().union(*(f.scores for f in frames))
    benign = frozenset(n for n in names if n.startswith(("no_", "not_")) or "_not_" in n)
    if not benign:
        return frames
    return [Frame(f.time, f.scores, benign) for f in frames]


def parse_csam(body: Mapping[str, Any], *, check: str = "") -> CsamAnswer:
    """Hash matches (image ``pdq``, video ``md5`` and ``videoSaferhashv0`` scenes) and, from the
    combined endpoint, the classifier's ``csam/pornography/other`` classes when nothing matched."""
    where, items, listed = _items(body, check)
    best: tuple[int, str] | None = None
    scenes: list[TimeRange] = []
    classes: list[Frame] = []
    for i, item in enumerate(items):
        path = _item_path(where, i, listed)
        if not isinstance(item, dict):
            raise _bad(check, path, "is not an object")
        hashes = item.get("hashes")  # absent: no match
        if hashes is not None:
            for distance, hash_type in _matches(hashes, check, f"{path}.hashes", scenes):
                if best is None or distance < best[0]:
                    best = (distance, hash_type)
        if item.get("classes"):
            classes.append(_frame(item, check, path))
    if best is None:
        return CsamAnswer(CsamResult(matched=False), tuple(_marked(classes)) if classes else ())
    return CsamAnswer(
        CsamResult(matched=True, hash_type=best[1], match_distance=best[0], scenes=tuple(scenes))
    )


def _matches(hashes: Any, check: str, where: str, scenes: list[TimeRange]) -> list[tuple[int, str]]:
    """(distance, hash type) of every match in ``hashes``; their scenes are appended to ``scenes``."""
    if not isinstance(hashes, list):
        raise _bad(check, where, "is not a list")
    found: list[tuple[int, str]] = []
    for k, entry in enumerate(hashes):
        if not isinstance(entry, dict):
            raise _bad(check, f"{where}[{k}]", "is not an object")
        hash_type, matches = entry.get("hashType", "unknown"), entry.get("matches")
        if not is_text(hash_type, _NAME_LIMIT):
            raise _bad(check, f"{where}[{k}].hashType", "is not a string")
        if matches is None:
            continue
        if not isinstance(matches, list):
            raise _bad(check, f"{where}[{k}].matches", "is not a list")
        for m, match in enumerate(matches):
            path = f"{where}[{k}].matches[{m}]"
            if not isinstance(match, dict):
                raise _bad(check, path, "is not an object")
            distance = match.get("matchDistance", 0)
            if type(distance) is not int or not 0 <= distance <= _MAX_INT32:
                raise _bad(check, f"{path}.matchDistance", "is not a non-negative integer")
            found.append((distance, hash_type))
            raw_scenes = match.get("scenes")
            if raw_scenes is not None:
                scenes.extend(_scenes(raw_scenes, check, f"{path}.scenes"))
    return found


def _scenes(raw: Any, check: str, where: str) -> list[TimeRange]:
    if not isinstance(raw, list):
        raise _bad(check, where, "is not a list")
    scenes = []
    for n, scene in enumerate(raw):
        if not isinstance(scene, dict):
            raise _bad(check, f"{where}[{n}]", "is not an object")
        start, end = _seconds(scene.get("startTimestamp")), _seconds(scene.get("endTimestamp"))
        if start is None:
            raise _bad(check, f"{where}[{n}].startTimestamp", "is not a finite number >= 0")
        if end is None:
            raise _bad(check, f"{where}[{n}].endTimestamp", "is not a finite number >= 0")
        if end < start:
            raise _bad(check, f"{where}[{n}].endTimestamp", "is before startTimestamp")
        scenes.append(TimeRange(start, end, "csam"))
    return scenes


def parse_matches(body: Mapping[str, Any], *, check: str = "") -> list[SimilarityMatch]:
    where, output = _output(body, check)
    if not isinstance(output, dict):
        raise _bad(check, where, "is not an object")
    matches = output.get("matches")
    if matches is None:
        return []
    if not isinstance(matches, list):
        raise _bad(check, f"{where}.matches", "is not a list")
    return [_match(m, check, f"{where}.matches[{i}]") for i, m in enumerate(matches)]


def _match(match: Any, check: str, where: str) -> SimilarityMatch:
    if not isinstance(match, dict):
        raise _bad(check, where, "is not an object")
    match_id, score = _identifier(match.get("id")), unit(match.get("similarity_score"))
    metadata, url = match.get("metadata"), match.get("url")
    if match_id is None:
        raise _bad(check, f"{where}.id", "is not a string or an integer")
    if score is None:
        raise _bad(check, f"{where}.similarity_score", "is not a number in [0, 1]")
    if metadata is not None and not is_text(metadata, _TEXT_LIMIT):
        raise _bad(check, f"{where}.metadata", "is not a string")
    if url is not None and not is_text(url, _TEXT_LIMIT):
        raise _bad(check, f"{where}.url", "is not a string")
    return SimilarityMatch(match_id=match_id, score=score, metadata=metadata, url=url)


def _identifier(value: Any) -> str | None:
    """An id as text: a non-empty string or an integer; else None."""
    if type(value) is int:
        return str(value)
    return value if value and is_text(value, _TEXT_LIMIT) else None


def _index_output(body: Mapping[str, Any], check: str) -> tuple[str, dict[str, Any]]:
    """A custom index add/remove output object (an absent one is empty)."""
    where, response = _response(body, check)
    output = response.get("output")
    if output is None:
        return f"{where}.output", {}
    if not isinstance(output, dict):
        raise _bad(check, f"{where}.output", "is not an object")
    return f"{where}.output", output


def added_id(body: Mapping[str, Any], check: str = "") -> str:
    where, output = _index_output(body, check)
    sha = output.get("shaHash", "")
    if not is_text(sha, _NAME_LIMIT):
        raise _bad(check, f"{where}.shaHash", "is not a string")
    return str(sha)


def removed_id(body: Mapping[str, Any], check: str = "") -> str | None:
    where, output = _index_output(body, check)
    removed = output.get("id")
    if removed is None:
        return None
    match_id = _identifier(removed)
    if match_id is None:
        raise _bad(check, f"{where}.id", "is not a string or an integer")
    return match_id


def task_id_of_ack(ack: Mapping[str, Any], check: str) -> str:
    """The id an async submission was acknowledged with (it goes into the polling URL)."""
    value = ack.get("task_id") or ack.get("id")
    if type(value) is int and value >= 0:
        return str(value)
    if type(value) is str and _TASK_ID.fullmatch(value):
        return value
    raise _bad(check, "task_id", "is missing or not a task id")


def as_is(body: dict[str, Any]) -> dict[str, Any]:
    return body
