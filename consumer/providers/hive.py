"""Hive clients: task API (visual, text, CSAM hash matching) and custom index, over httpx.

Response parsing is pure and tolerant of both ``status.code`` forms ("0" and 200).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from pydantic import SecretStr

from ..errors import PermanentError, RateLimitedError, TransientError
from ..httpclient import HttpClient
from ..media import Media, MediaPolicy
from ..policy import Frame
from ..records import CsamResult, SimilarityMatch, TimeRange
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
    "parse_classification",
    "parse_csam",
    "parse_matches",
    "raise_task_error",
]

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
        self.check = check
        self._retry = retry
        self._timeout = timeout_s
        self._gate = gate

    def _outage(self) -> bool:
        return self._gate is not None and self._gate.is_open

    async def post(
        self, path: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]] | None = None
    ) -> tuple[dict[str, Any], int]:
        async def once() -> dict[str, Any]:
            return await self._post_once(path, fields, files)

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


def check_response(resp: httpx.Response, check: str, *, task_errors: bool = True) -> dict[str, Any]:
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
        raise TransientError(f"{check}: Hive answered 200 with a body that is not JSON", check=check)
    if not isinstance(body, dict):
        raise TransientError(f"{check}: Hive answered 200 with an unexpected body", check=check)
    if task_errors:
        raise_task_error(body, check)
    return body


_NOT_JSON = object()


def _json(resp: httpx.Response) -> Any:
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _message(resp: httpx.Response, body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or resp.reason_phrase)[:300]
    return resp.reason_phrase or "no message"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _statuses(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = body.get("status")
    if isinstance(status, list):
        return [s for s in status if isinstance(s, Mapping)]
    if isinstance(status, Mapping):
        return [{"status": status, "response": body.get("response", {})}]
    return [{"status": {"code": "0"}, "response": body.get("response", {})}]


def raise_task_error(body: Mapping[str, Any], check: str) -> None:
    for entry in _statuses(body):
        inner = entry.get("status") or {}
        code = str(inner.get("code", "0"))
        if code in OK_CODES:
            continue
        message = str(inner.get("message", ""))[:300]
        if code.startswith("2"):
            raise TransientError(f"{check}: Hive task error {code}: {message}", check=check, code=code)
        raise PermanentError(f"{check}: Hive task error {code}: {message}", check=check, code=code)


def _response(body: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = _statuses(body)
    return statuses[0].get("response") or {} if statuses else {}


def _model(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    inp = _response(body).get("input") or {}
    version = inp.get("model_version")
    return inp.get("model"), None if version is None else str(version)


def parse_classification(body: Mapping[str, Any]) -> list[Frame]:
    output = _response(body).get("output") or []
    if isinstance(output, Mapping):
        output = [output]
    frames = []
    for item in output:
        classes = item.get("classes") or []
        frames.append(
            Frame(
                float(item.get("time", 0) or 0),
                {str(c["class"]): float(c["score"]) for c in classes if "class" in c},
            )
        )
    return frames


def parse_csam(body: Mapping[str, Any]) -> CsamAnswer:
    """Hash matches (image ``pdq``, video ``md5`` and ``videoSaferhashv0`` scenes) and, from the
    combined endpoint, the classifier's ``csam/pornography/other`` classes when nothing matched."""
    output = _response(body).get("output") or []
    items = [output] if isinstance(output, Mapping) else list(output)
    best: tuple[int, str] | None = None
    scenes: list[TimeRange] = []
    for item in items:
        for h in item.get("hashes") or []:
            hash_type = str(h.get("hashType", "unknown"))
            for m in h.get("matches") or []:
                d = int(m.get("matchDistance", 0))
                if best is None or d < best[0]:
                    best = (d, hash_type)
                for s in m.get("scenes") or []:
                    scenes.append(TimeRange(float(s["startTimestamp"]), float(s["endTimestamp"]), "csam"))
    classes = [
        Frame(float(item.get("time", 0) or 0), {str(c["class"]): float(c["score"]) for c in item["classes"]})
        for item in items
        if item.get("classes")
    ]
    if best is None:
        return CsamAnswer(CsamResult(matched=False), tuple(classes))
    return CsamAnswer(
        CsamResult(matched=True, hash_type=best[1], match_distance=best[0], scenes=tuple(scenes))
    )


def parse_matches(body: Mapping[str, Any]) -> list[SimilarityMatch]:
    output = _response(body).get("output") or {}
    return [
        SimilarityMatch(
            match_id=str(m.get("id")),
            score=float(m.get("similarity_score", 0.0)),
            metadata=m.get("metadata"),
            url=m.get("url"),
        )
        for m in (output.get("matches") or [])
    ]


def _output(body: Mapping[str, Any]) -> Mapping[str, Any]:
    out = _response(body).get("output") or {}
    return out if isinstance(out, Mapping) else {}


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
        fields, files = await self.form(content)
        fields.update(extra or {})
        if not asynchronous:
            return await self.transport.post(f"{path}/sync", fields, files)
        if self._tasks is None:
            raise RuntimeError("async Hive tasks need the callback receiver (callbacks settings)")
        ack, attempts = await self.transport.post(
            f"{path}/async", {**fields, "callback_url": self._tasks.callback_url}, files
        )
        task_id = ack.get("task_id") or ack.get("id")
        if not task_id:
            raise TransientError(
                f"{self.transport.check}: Hive acknowledged without a task id", check=self.transport.check
            )
        body = await self._tasks.wait(str(task_id), lambda t: self.transport.get_task(t, self._version))
        raise_task_error(body, self.transport.check)
        return body, attempts

    @property
    def task_path(self) -> str:
        return f"/api/{self._version}/task"


class HiveClassifier:
    """Visual or text classification through the task API (sync, or async for long media)."""

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    async def classify(self, content: Media | str) -> Checked[Sequence[Frame]]:
        body, attempts = await self._tasks.submit(self._tasks.task_path, content, asynchronous=self._async)
        model, version = _model(body)
        return Checked(parse_classification(body), PROVIDER, model, version, attempts)


class HiveHashMatcher:
    """CSAM hash matching (Thorn) with the CSAM project's key; the combined endpoint's classifier
    classes come back in ``CsamAnswer.classes``."""

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    async def match(self, media: Media) -> Checked[CsamAnswer]:
        body, attempts = await self._tasks.submit(self._tasks.task_path, media, asynchronous=self._async)
        model, version = _model(body)
        return Checked(parse_csam(body), PROVIDER, model, version, attempts)


class HiveCustomIndex:
    """Custom index add / query / remove (``/api/v2/custom_index/*/{sync,async}``).

    Hive's index has no tenant scoping; the tenant is carried in the metadata string and matches
    of other tenants are filtered out on query.
    """

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        body, attempts = await self._tasks.submit(
            "/api/v2/custom_index/query", media, asynchronous=self._async
        )
        matches = [
            replace(m, metadata=_strip_tenant(m.metadata))
            for m in parse_matches(body)
            if _tenant_of(m.metadata) in (None, tenant)
        ]
        return Checked(matches, PROVIDER, attempts=attempts)

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        body, _ = await self._tasks.submit(
            "/api/v2/custom_index/add",
            media,
            asynchronous=self._async,
            extra={"metadata": f"tenant={tenant};{metadata}"},
        )
        return str(_output(body).get("shaHash", ""))

    async def remove(self, media: Media, tenant: str) -> str | None:
        body, _ = await self._tasks.submit("/api/v2/custom_index/remove", media, asynchronous=self._async)
        removed = _output(body).get("id")
        return None if removed is None else str(removed)


def _strip_tenant(metadata: str | None) -> str | None:
    if metadata and metadata.startswith("tenant="):
        return metadata.split(";", 1)[1] if ";" in metadata else ""
    return metadata


def _tenant_of(metadata: str | None) -> str | None:
    if metadata and metadata.startswith("tenant="):
        return metadata.split(";", 1)[0].removeprefix("tenant=")
    return None
