"""Hive clients: task API (visual, text, CSAM hash matching) and custom index, over httpx.

Response parsing is pure and tolerant of both ``status.code`` forms ("0" and 200), of a status list
(task API), one status object (custom index) or none. Anything else a provider answers with
status 200 (a field missing, of the wrong type or out of range) is a ``ProviderAnswerError``
naming the field's path: retried like any transient error, then the check fails closed. Messages
built from a provider's body go through ``redaction.redact``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeGuard, TypeVar

import orjson
from pydantic import SecretStr

from ..errors import PermanentError, ProviderAnswerError, RateLimitedError, TransientError
from ..httpclient import HttpClient
from ..media import Media, MediaPolicy
from ..policy import Frame
from ..records import CsamResult, SimilarityMatch, TimeRange
from ..redaction import redact, register_secret
from ..retry import RetryPolicy, retrying

if TYPE_CHECKING:
    from ..callbacks import AsyncTasks
from . import Checked, CsamAnswer
from .http import ProviderGate, count_retry, send

__all__ = [
    "HiveClassifier",
    "HiveCustomIndex",
    "HiveHashMatcher",
    "HiveTasks",
    "HiveTransport",
    "HttpAnswer",
    "check_response",
    "parse_classification",
    "parse_csam",
    "parse_matches",
    "raise_task_error",
]

T = TypeVar("T")


class HttpAnswer(Protocol):
    """What the response mappers read of an answer (``httpclient.Answer`` or ``httpx.Response``)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    @property
    def reason_phrase(self) -> str: ...


PROVIDER = "hive"
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
OK_CODES = {"0", "200"}


class HiveTransport:
    """POSTs one Hive form request with the project's key, maps errors, retries transient ones."""

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        key: SecretStr,
        check: str,
        retry: RetryPolicy,
        timeout_s: float = 10.0,
        gate: ProviderGate | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._key = key
        register_secret(key)  # an error body echoing it must not carry it into a message
        self.check = check
        self._retry = retry
        self._timeout = timeout_s
        self._gate = gate

    def _outage(self) -> bool:
        return self._gate is not None and self._gate.is_open

    async def post(
        self, path: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]] | None = None
    ) -> tuple[dict[str, Any], int]:
        return await self.post_parsed(path, fields, files, _as_is)

    async def post_parsed(
        self,
        path: str,
        fields: Mapping[str, str],
        files: Mapping[str, tuple[str, bytes, str]] | None,
        parse: Callable[[dict[str, Any]], T],
    ) -> tuple[T, int]:
        """``parse`` of the answer's body; a malformed answer (ProviderAnswerError) is retried too."""

        async def once() -> T:
            return parse(await self._post_once(path, fields, files))

        return await retrying(self._retry, once, count_retry, self._outage)

    async def get_task(self, task_id: str, version: str = "v1") -> dict[str, Any] | None:
        """A finished async task's body, or None while Hive is still processing it (HTTP 202)."""

        async def once() -> dict[str, Any] | None:
            headers = {"authorization": f"token {self._key.get_secret_value()}", "accept": "application/json"}
            resp = await send(
                self._http,
                "GET",
                f"{self._base}/api/{version}/task/{task_id}",
                check=self.check,
                provider="Hive",
                gate=self._gate,
                headers=headers,
                timeout=self._timeout,
            )
            if resp.status_code == 202:
                return None
            return check_response(resp, self.check, task_errors=False)

        body, _ = await retrying(self._retry, once, count_retry, self._outage)
        return body

    async def _post_once(
        self, path: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]] | None
    ) -> dict[str, Any]:
        headers = {"authorization": f"token {self._key.get_secret_value()}", "accept": "application/json"}
        resp = await send(
            self._http,
            "POST",
            self._base + path,
            check=self.check,
            provider="Hive",
            gate=self._gate,
            data=dict(fields),
            files=dict(files) if files else None,
            headers=headers,
            timeout=self._timeout,
        )
        return check_response(resp, self.check)


def check_response(resp: HttpAnswer, check: str, *, task_errors: bool = True) -> dict[str, Any]:
    """Map an HTTP answer to a body or an error of the tree (no secrets in messages)."""
    status = resp.status_code
    body = _json(resp)
    if status == 429:
        raise RateLimitedError(
            f"{check}: Hive rate limited (429): {_message(resp, body)}",
            check=check,
            retry_after=_retry_after(resp.headers.get("retry-after")),
        )
    if status in TRANSIENT_STATUS or status >= 500:
        raise TransientError(
            f"{check}: Hive HTTP {status}: {_message(resp, body)}", check=check, status=status
        )
    if status != 200:
        raise PermanentError(
            f"{check}: Hive HTTP {status}: {_message(resp, body)}", check=check, status=status
        )
    if body is _NOT_JSON:
        raise ProviderAnswerError(f"{check}: Hive answered 200 with a body that is not JSON", check=check)
    if not isinstance(body, dict):
        raise _bad(check, "body", "is not an object")
    if task_errors:
        raise_task_error(body, check)
    return body


_NOT_JSON = object()


def _json(resp: HttpAnswer) -> Any:
    try:
        return orjson.loads(resp.content)  # bytes in any encoding, any nesting: JSONDecodeError at worst
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _message(resp: HttpAnswer, body: Any) -> str:
    """The provider's own words about a failure, redacted (a provider may echo our key)."""
    if isinstance(body, dict):
        for name in ("message", "error"):
            text = body.get(name)
            if isinstance(text, str) and text:
                return redact(text)
    return redact(resp.reason_phrase or "no message")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0.0 <= seconds < math.inf else None


# --- answer shapes -------------------------------------------------------------------------------
# Explicit type checks (cheaper than a schema library on this hot path). Errors name the field's
# path, never its value; paths are built only when a check fails.

_MAX_INT = 2**53  # larger JSON integers lose precision as floats
_MAX_INT32 = 2**31 - 1  # Avro int fields of the verdict (match_distance)
_NAME_LIMIT = 256  # class names, hash types, model names and versions
_TEXT_LIMIT = 8192  # match ids, metadata, urls
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")  # one URL path segment, nothing more


def _bad(check: str, where: str, problem: str) -> ProviderAnswerError:
    prefix = f"{check}: " if check else ""
    return ProviderAnswerError(f"{prefix}Hive answer: {where} {problem}", check=check, field=where)


def _unit(value: Any) -> float | None:
    """A score: a finite number in [0, 1] (not a bool), as a float; else None."""
    if type(value) is float:
        return value if 0.0 <= value <= 1.0 else None  # NaN fails the comparison
    if type(value) is int and 0 <= value <= 1:
        return float(value)
    return None


def _seconds(value: Any) -> float | None:
    """A time: a finite number >= 0 (not a bool), as a float; else None."""
    if type(value) is float:
        return value if 0.0 <= value < math.inf else None
    if type(value) is int and 0 <= value <= _MAX_INT:
        return float(value)
    return None


def _is_text(value: Any, limit: int) -> TypeGuard[str]:
    """A string the verdict can carry: bounded, and valid UTF-8 (``json.loads`` lets lone
    surrogates through, which Avro could not encode)."""
    if type(value) is not str or len(value) > limit:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


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


def raise_task_error(body: Mapping[str, Any], check: str) -> None:
    for entry in _statuses(body, check):
        code = _code(entry, check)
        if code in OK_CODES:
            continue
        text = None if entry.status is None else entry.status.get("message")
        message = redact(text) if isinstance(text, str) else "no message"
        if code.startswith("2"):
            raise TransientError(f"{check}: Hive task error {code}: {message}", check=check, code=code)
        raise PermanentError(f"{check}: Hive task error {code}: {message}", check=check, code=code)


def _response(body: Mapping[str, Any], check: str = "") -> tuple[str, dict[str, Any]]:
    """The first entry's response object and its path."""
    entry = _statuses(body, check)[0]
    where = entry.path("response")
    if not isinstance(entry.response, dict):
        raise _bad(check, where, "is missing or not an object")
    return where, entry.response


def _model(body: Mapping[str, Any], check: str = "") -> tuple[str | None, str | None]:
    where, response = _response(body, check)
    inp = response.get("input")
    if inp is None:
        return None, None
    if not isinstance(inp, dict):
        raise _bad(check, f"{where}.input", "is not an object")
    model, version = inp.get("model"), inp.get("model_version")
    if model is not None and not _is_text(model, _NAME_LIMIT):
        raise _bad(check, f"{where}.input.model", "is not a string")
    if version is None:
        return model, None
    if type(version) is int:
        return model, str(version)
    if not _is_text(version, _NAME_LIMIT):
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
        if not (type(name) is str and name.isascii() and len(name) <= _NAME_LIMIT) and not _is_text(
            name, _NAME_LIMIT
        ):
            raise _bad(check, f"{where}.classes[{j}].class", "is not a string")
        if type(score) is not float or not 0.0 <= score <= 1.0:  # NaN fails the comparison
            score = _unit(score)
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
    return frames


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
        return CsamAnswer(CsamResult(matched=False), tuple(classes))
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
        if not _is_text(hash_type, _NAME_LIMIT):
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
    match_id, score = _identifier(match.get("id")), _unit(match.get("similarity_score"))
    metadata, url = match.get("metadata"), match.get("url")
    if match_id is None:
        raise _bad(check, f"{where}.id", "is not a string or an integer")
    if score is None:
        raise _bad(check, f"{where}.similarity_score", "is not a number in [0, 1]")
    if metadata is not None and not _is_text(metadata, _TEXT_LIMIT):
        raise _bad(check, f"{where}.metadata", "is not a string")
    if url is not None and not _is_text(url, _TEXT_LIMIT):
        raise _bad(check, f"{where}.url", "is not a string")
    return SimilarityMatch(match_id=match_id, score=score, metadata=metadata, url=url)


def _identifier(value: Any) -> str | None:
    """An id as text: a non-empty string or an integer; else None."""
    if type(value) is int:
        return str(value)
    return value if value and _is_text(value, _TEXT_LIMIT) else None


def _index_output(body: Mapping[str, Any], check: str) -> tuple[str, dict[str, Any]]:
    """A custom index add/remove output object (an absent one is empty)."""
    where, response = _response(body, check)
    output = response.get("output")
    if output is None:
        return f"{where}.output", {}
    if not isinstance(output, dict):
        raise _bad(check, f"{where}.output", "is not an object")
    return f"{where}.output", output


def _added(body: Mapping[str, Any], check: str = "") -> str:
    where, output = _index_output(body, check)
    sha = output.get("shaHash", "")
    if not _is_text(sha, _NAME_LIMIT):
        raise _bad(check, f"{where}.shaHash", "is not a string")
    return str(sha)


def _removed(body: Mapping[str, Any], check: str = "") -> str | None:
    where, output = _index_output(body, check)
    removed = output.get("id")
    if removed is None:
        return None
    match_id = _identifier(removed)
    if match_id is None:
        raise _bad(check, f"{where}.id", "is not a string or an integer")
    return match_id


def _task_id(ack: Mapping[str, Any], check: str) -> str:
    """The id an async submission was acknowledged with (it goes into the polling URL)."""
    value = ack.get("task_id") or ack.get("id")
    if type(value) is int and value >= 0:
        return str(value)
    if type(value) is str and _TASK_ID.fullmatch(value):
        return value
    raise _bad(check, "task_id", "is missing or not a task id")


def _as_is(body: dict[str, Any]) -> dict[str, Any]:
    return body


class HiveTasks:
    """Submits one Hive request sync, or async and waits for its callback (or polls)."""

    def __init__(
        self,
        transport: HiveTransport,
        *,
        version: str = "v1",
        media: MediaPolicy | None = None,
        tasks: AsyncTasks | None = None,
    ) -> None:
        self.transport = transport
        self._version = version
        self._media = media or MediaPolicy()
        self._tasks = tasks

    async def form(self, content: Media | str) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
        if isinstance(content, str):
            return {"text_data": content}, {}
        return (await self._media.prepare(content)).form()

    async def submit(
        self,
        path: str,
        content: Media | str,
        *,
        asynchronous: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """``path`` without its /sync or /async suffix, e.g. ``/api/v1/task``."""
        return await self.run(path, content, _as_is, asynchronous=asynchronous, extra=extra)

    async def run(
        self,
        path: str,
        content: Media | str,
        parse: Callable[[dict[str, Any]], T],
        *,
        asynchronous: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[T, int]:
        """Like ``submit``, with the body through ``parse`` (inside the retries when sync)."""
        fields, files = await self.form(content)
        fields.update(extra or {})
        if not asynchronous:
            return await self.transport.post_parsed(f"{path}/sync", fields, files, parse)
        if self._tasks is None:
            raise RuntimeError("async Hive tasks need the callback receiver (callbacks settings)")
        check = self.transport.check
        task_id, attempts = await self.transport.post_parsed(
            f"{path}/async",
            {**fields, "callback_url": self._tasks.callback_url},
            files,
            lambda ack: _task_id(ack, check),
        )
        body = await self._tasks.wait(task_id, lambda t: self.transport.get_task(t, self._version))
        raise_task_error(body, check)
        return parse(body), attempts

    @property
    def task_path(self) -> str:
        return f"/api/{self._version}/task"

    @property
    def check(self) -> str:
        return self.transport.check


class HiveClassifier:
    """Visual or text classification through the task API (sync, or async for long media)."""

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    def _parse(self, body: dict[str, Any]) -> tuple[list[Frame], tuple[str | None, str | None]]:
        check = self._tasks.check
        return parse_classification(body, check=check), _model(body, check)

    async def classify(self, content: Media | str) -> Checked[Sequence[Frame]]:
        (frames, (model, version)), attempts = await self._tasks.run(
            self._tasks.task_path, content, self._parse, asynchronous=self._async
        )
        return Checked(frames, PROVIDER, model, version, attempts)


class HiveHashMatcher:
    """CSAM hash matching (Thorn) with the CSAM project's key; the combined endpoint's classifier
    classes come back in ``CsamAnswer.classes``."""

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    def _parse(self, body: dict[str, Any]) -> tuple[CsamAnswer, tuple[str | None, str | None]]:
        check = self._tasks.check
        return parse_csam(body, check=check), _model(body, check)

    async def match(self, media: Media) -> Checked[CsamAnswer]:
        (answer, (model, version)), attempts = await self._tasks.run(
            self._tasks.task_path, media, self._parse, asynchronous=self._async
        )
        return Checked(answer, PROVIDER, model, version, attempts)


class HiveCustomIndex:
    """Custom index add / query / remove (``/api/v2/custom_index/*/{sync,async}``).

    Hive's index has no tenant scoping; the tenant is carried in the metadata string and matches
    of other tenants are filtered out on query.
    """

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    def _matches(self, body: dict[str, Any]) -> list[SimilarityMatch]:
        return parse_matches(body, check=self._tasks.check)

    def _added(self, body: dict[str, Any]) -> str:
        return _added(body, self._tasks.check)

    def _removed(self, body: dict[str, Any]) -> str | None:
        return _removed(body, self._tasks.check)

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        found, attempts = await self._tasks.run(
            "/api/v2/custom_index/query", media, self._matches, asynchronous=self._async
        )
        matches = [
            replace(m, metadata=_strip_tenant(m.metadata))
            for m in found
            if _tenant_of(m.metadata) in (None, tenant)
        ]
        return Checked(matches, PROVIDER, attempts=attempts)

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        sha, _ = await self._tasks.run(
            "/api/v2/custom_index/add",
            media,
            self._added,
            asynchronous=self._async,
            extra={"metadata": f"tenant={tenant};{metadata}"},
        )
        return sha

    async def remove(self, media: Media, tenant: str) -> str | None:
        removed, _ = await self._tasks.run(
            "/api/v2/custom_index/remove", media, self._removed, asynchronous=self._async
        )
        return removed


def _strip_tenant(metadata: str | None) -> str | None:
    if metadata and metadata.startswith("tenant="):
        return metadata.split(";", 1)[1] if ";" in metadata else ""
    return metadata


def _tenant_of(metadata: str | None) -> str | None:
    if metadata and metadata.startswith("tenant="):
        return metadata.split(";", 1)[0].removeprefix("tenant=")
    return None
