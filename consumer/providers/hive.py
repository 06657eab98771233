"""Hive clients: task API (visual, text, CSAM hash matching) and custom index, over httpx.

Response parsing is pure and tolerant of both ``status.code`` forms ("0" and 200).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx
from pydantic import SecretStr

from ..errors import PermanentError, RateLimitedError, TransientError
from ..media import Media
from ..policy import Frame
from ..records import CsamResult, SimilarityMatch, TimeRange
from ..retry import RetryPolicy, retrying
from . import Checked

__all__ = [
    "HiveClassifier",
    "HiveCustomIndex",
    "HiveHashMatcher",
    "HiveTransport",
    "parse_classification",
    "parse_csam",
    "parse_matches",
]

PROVIDER = "hive"
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
OK_CODES = {"0", "200"}


class HiveTransport:
    """POSTs one Hive form request with the project's key, maps errors, retries transient ones."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        key: SecretStr,
        check: str,
        retry: RetryPolicy,
        timeout_s: float = 10.0,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._key = key
        self.check = check
        self._retry = retry
        self._timeout = timeout_s

    async def post(
        self, path: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]] | None = None
    ) -> tuple[dict[str, Any], int]:
        async def once() -> dict[str, Any]:
            return await self._post_once(path, fields, files)

        return await retrying(self._retry, once)

    async def _post_once(
        self, path: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]] | None
    ) -> dict[str, Any]:
        headers = {"authorization": f"token {self._key.get_secret_value()}", "accept": "application/json"}
        try:
            resp = await self._http.post(
                self._base + path,
                data=dict(fields),
                files=dict(files) if files else None,
                headers=headers,
                timeout=self._timeout,
            )
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"{self.check}: timeout calling Hive ({type(exc).__name__})", check=self.check
            ) from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"{self.check}: cannot reach Hive ({type(exc).__name__})", check=self.check
            ) from None
        return check_response(resp, self.check)


def check_response(resp: httpx.Response, check: str) -> dict[str, Any]:
    """Map an HTTP answer to a body or an error of the tree (no secrets in messages)."""
    status = resp.status_code
    message = _message(resp)
    if status == 429:
        raise RateLimitedError(
            f"{check}: Hive rate limited (429): {message}",
            check=check,
            retry_after=_retry_after(resp.headers.get("retry-after")),
        )
    if status in TRANSIENT_STATUS or status >= 500:
        raise TransientError(f"{check}: Hive HTTP {status}: {message}", check=check, status=status)
    if status != 200:
        raise PermanentError(f"{check}: Hive HTTP {status}: {message}", check=check, status=status)
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TransientError(
            f"{check}: Hive answered 200 with a body that is not JSON", check=check
        ) from None
    if not isinstance(body, dict):
        raise TransientError(f"{check}: Hive answered 200 with an unexpected body", check=check)
    _raise_task_error(body, check)
    return body


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return resp.reason_phrase or "no message"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or resp.reason_phrase)[:300]
    return resp.reason_phrase


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


def _raise_task_error(body: Mapping[str, Any], check: str) -> None:
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


def parse_csam(body: Mapping[str, Any]) -> CsamResult:
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
    if best is None:
        return CsamResult(matched=False)
    return CsamResult(matched=True, hash_type=best[1], match_distance=best[0], scenes=tuple(scenes))


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


class HiveClassifier:
    """Visual or text classification through ``/api/v1/task/sync``."""

    def __init__(self, transport: HiveTransport) -> None:
        self._t = transport

    async def classify(self, content: Media | str) -> Checked[Sequence[Frame]]:
        if isinstance(content, str):
            body, attempts = await self._t.post("/api/v1/task/sync", {"text_data": content})
        else:
            fields, files = content.form()
            body, attempts = await self._t.post("/api/v1/task/sync", fields, files)
        model, version = _model(body)
        return Checked(parse_classification(body), PROVIDER, model, version, attempts)


class HiveHashMatcher:
    """CSAM hash matching (Thorn) through the CSAM project's ``/api/v1/task/sync``."""

    def __init__(self, transport: HiveTransport) -> None:
        self._t = transport

    async def match(self, media: Media) -> Checked[CsamResult]:
        fields, files = media.form()
        body, attempts = await self._t.post("/api/v1/task/sync", fields, files)
        model, version = _model(body)
        return Checked(parse_csam(body), PROVIDER, model, version, attempts)


class HiveCustomIndex:
    """Custom index add / query / remove (``/api/v2/custom_index/*/sync``).

    Hive's index has no tenant scoping; the tenant is carried in the metadata string and matches
    of other tenants are filtered out on query.
    """

    def __init__(self, transport: HiveTransport) -> None:
        self._t = transport

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        fields, files = media.form()
        body, attempts = await self._t.post("/api/v2/custom_index/query/sync", fields, files)
        matches = [
            replace(m, metadata=_strip_tenant(m.metadata))
            for m in parse_matches(body)
            if _tenant_of(m.metadata) in (None, tenant)
        ]
        return Checked(matches, PROVIDER, attempts=attempts)

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        fields, files = media.form()
        body, _ = await self._t.post(
            "/api/v2/custom_index/add/sync", {**fields, "metadata": f"tenant={tenant};{metadata}"}, files
        )
        return str(_output(body).get("shaHash", ""))

    async def remove(self, media: Media, tenant: str) -> str | None:
        fields, files = media.form()
        body, _ = await self._t.post("/api/v2/custom_index/remove/sync", fields, files)
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
