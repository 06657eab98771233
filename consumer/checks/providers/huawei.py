"""Huawei Cloud ImageSearch as the similarity index: search, add, delete, check, modify tags.

Searches send the image as base64 ``file`` (``path`` names an image already in the library, so a
new upload's URL media is downloaded first). The tenant travels as a tag and every search is
scoped to it; a result counts only when its tenant tag is the upload's exactly (the provider's
filter is not trusted), and entries' paths are scoped by tenant, so a tenant removes only its own.
Images are shrunk to the API's 2048-pixel long-side limit before sending, on the
``ImageWorkers`` threads (never on the event loop), and images over the pixel limit are refused.

Errors map through the ``HUAWEI_ERRORS`` table (HTTP status and ImageSearch/APIGW error code).
Answers are checked field by field: a 200 whose body does not have the documented shape is a
``ProviderAnswerError`` naming the field (retried, then the check fails closed); error messages
built from a provider's body go through the transport's ``Redactor`` (``answers.error_for``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import SecretStr

from consumer.checks.imaging import ImageWorkers, default_workers, fit_for_search
from consumer.checks.media import Media, MediaFetcher
from consumer.checks.providers import Checked
from consumer.checks.providers.answers import (
    ErrorTable,
    HttpAnswer,
    Outcome,
    Rule,
    answer_error,
    is_text,
    json_or,
    provider_words,
    raise_for_answer,
    unit,
)
from consumer.checks.providers.http import ProviderEndpoint, ProviderGate
from consumer.checks.redaction import Redactor
from consumer.checks.retry import RetryPolicy
from consumer.core import index_metadata
from consumer.core.records import SimilarityMatch
from consumer.core.secrets import RotatingSecret
from consumer.core.validation import TENANT_ID
from consumer.errors import PermanentError, ProviderAnswerError
from consumer.transports.httpclient import HttpClient

__all__ = [
    "HUAWEI_ERRORS",
    "HuaweiImageSearch",
    "HuaweiTransport",
    "check_huawei_response",
    "fit_for_search",
    "parse_exists",
    "parse_search",
]

T = TypeVar("T")
PROVIDER = "huawei"
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}\.[0-9]{1,6}")  # IS.0012, APIGW.0308
_TEXT_LIMIT = 8192  # index paths and tag values

# ImageSearch answers errors as HTTP 400 ``{"error_code": "IS.00xx", "error_msg": ...}`` (seed
# huawei-imagesearch-search.txt: IS.0003; DESIGN.md section 2: IS.0004 token, IS.0012 timeout); the
# meanings are Huawei's ImageSearch error code table (IS.0001-IS.0016), which the seed refers to;
# its HTTP statuses mean what they mean anywhere (``answers.HTTP_STATUSES``).
# Codes starting with APIGW come from Huawei's API gateway in front of it: the two listed are the
# ones this project meets (docs/simulator.md, the unit tests). Any other code is permanent; a 5xx or
# a 429 wins over the code. Note: the simulator reads IS.0008, IS.0010 and IS.0011 differently (an
# undecodable image, a path not in the library, a 5xx; docs/simulator.md), so IS.0008's note fits
# both readings, and ``remove`` relies on the simulator's IS.0010.
HUAWEI_ERRORS = ErrorTable(
    vendor="ImageSearch",
    codes={
        "IS.0001": Rule(Outcome.PERMANENT, "a request parameter is missing or empty", content=True),
        "IS.0002": Rule(Outcome.PERMANENT, "a request parameter's type is not supported", content=True),
        "IS.0003": Rule(Outcome.PERMANENT, "a request parameter cannot be empty", content=True),
        "IS.0004": Rule(Outcome.PERMANENT, "token verification failed", content=False),
        "IS.0005": Rule(Outcome.PERMANENT, "a header is missing or empty", content=False),
        "IS.0006": Rule(Outcome.PERMANENT, "the request body is too big", content=True),
        "IS.0007": Rule(Outcome.PERMANENT, "invalid instance name", content=False),
        "IS.0008": Rule(Outcome.PERMANENT, "the input data is not accepted", content=True),
        "IS.0009": Rule(Outcome.TRANSIENT, "internal error of the service"),
        "IS.0010": Rule(Outcome.PERMANENT, "the request method is not allowed", content=False),
        "IS.0011": Rule(Outcome.PERMANENT, "the user may not use this request method", content=False),
        "IS.0012": Rule(Outcome.TRANSIENT, "operation timed out"),
        "IS.0013": Rule(Outcome.PERMANENT, "the token is empty", content=False),
        "IS.0014": Rule(Outcome.PERMANENT, "the instance's status is abnormal", content=False),
        "IS.0015": Rule(Outcome.PERMANENT, "the model file does not exist", content=False),
        "IS.0016": Rule(Outcome.PERMANENT, "the path is invalid", content=True),
        "APIGW.0301": Rule(Outcome.PERMANENT, "IAM authentication failed", content=False),
        "APIGW.0308": Rule(Outcome.TRANSIENT, "throttling threshold reached"),
    },
)


class HuaweiTransport:
    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        project_id: str,
        instance: str,
        token: SecretStr | RotatingSecret,
        retry: RetryPolicy,
        timeout_s: float = 10.0,
        check: str = "similarity",
        gate: ProviderGate | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._root = f"{base_url.rstrip('/')}/v1/{project_id}/{instance}/image"
        # read per request (a rotated token file replaces it: runtime.secrets)
        self._token = (
            token
            if isinstance(token, RotatingSecret)
            else RotatingSecret("huawei.token", token.get_secret_value())
        )
        self.redactor = redactor if redactor is not None else Redactor()
        # an error body echoing the token must not carry it into a message, nor one it is given later
        self.redactor.register(self._token.current())
        self._token.subscribe(self.redactor.register)
        self.check = check
        self._endpoint = ProviderEndpoint(
            http, check=check, provider="ImageSearch", retry=retry, gate=gate, timeout_s=timeout_s
        )

    async def call(self, method: str, suffix: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer, _ = await self.call_parsed(method, suffix, body, _as_is)
        return answer

    async def call_parsed(
        self, method: str, suffix: str, body: Mapping[str, Any], parse: Callable[[dict[str, Any]], T]
    ) -> tuple[T, int]:
        """``parse`` of the answer's body; a malformed answer (ProviderAnswerError) is retried too."""
        headers = {"X-Auth-Token": self._token.current(), "content-type": "application/json"}
        return await self._endpoint.call(
            method,
            self._root + suffix,
            lambda answer: parse(check_huawei_response(answer, self.check, redactor=self.redactor)),
            content=json.dumps(body),
            headers=headers,
        )


def check_huawei_response(resp: HttpAnswer, check: str, *, redactor: Redactor) -> dict[str, Any]:
    """Map an HTTP answer to a body or an error of the tree (no secrets in messages: ``redactor``)."""
    raw = json_or(resp.content, None)
    body = raw if isinstance(raw, dict) else None
    fields = body if body is not None else {}
    raw_code = fields.get("error_code")
    code = raw_code if isinstance(raw_code, str) and _ERROR_CODE.fullmatch(raw_code) else None
    words = provider_words(resp, fields, "error_msg")
    raise_for_answer(HUAWEI_ERRORS, resp, check, redactor=redactor, code=code, message=words)
    if body is None:
        raise ProviderAnswerError(
            f"{check}: ImageSearch answered 200 with a body that is not a JSON object", check=check
        )
    if raw_code is not None and raw_code != "":
        raise _bad(check, "error_code", "is not an ImageSearch error code")
    return body


# --- answer shapes -------------------------------------------------------------------------------


def _bad(check: str, where: str, problem: str) -> ProviderAnswerError:
    return answer_error("ImageSearch", check, where, problem)


def parse_search(body: Mapping[str, Any], check: str = "") -> list[SimilarityMatch]:
    """The matches of a search answer (``result``: path, sim, tags)."""
    result = body.get("result")
    if not isinstance(result, list):
        raise _bad(check, "result", "is missing or not a list")
    return [_match(item, check, i) for i, item in enumerate(result)]


def _match(item: Any, check: str, index: int) -> SimilarityMatch:
    if not isinstance(item, dict):
        raise _bad(check, f"result[{index}]", "is not an object")
    path, sim, tags = item.get("path"), unit(item.get("sim")), item.get("tags")
    if not is_text(path, _TEXT_LIMIT, non_empty=True):
        raise _bad(check, f"result[{index}].path", "is not a string")
    if sim is None:
        raise _bad(check, f"result[{index}].sim", "is not a number in [0, 1]")
    note = owner = None
    if tags is not None:
        if not isinstance(tags, dict):
            raise _bad(check, f"result[{index}].tags", "is not an object")
        note, owner = tags.get("note"), tags.get("tenant")
        if note is not None and not (note == "" or is_text(note, _TEXT_LIMIT, non_empty=True)):
            raise _bad(check, f"result[{index}].tags.note", "is not a string")
    # the owner and note in the structured form every similarity index is filtered by
    stored = None
    if isinstance(owner, str) and TENANT_ID.fullmatch(owner):
        stored = index_metadata.encode(owner, note or "")
    return SimilarityMatch(match_id=path, score=sim, metadata=stored, url=path)


def parse_exists(body: Mapping[str, Any], check: str = "") -> bool:
    """``result.exist`` of a check answer."""
    result = body.get("result")
    if not isinstance(result, dict):
        raise _bad(check, "result", "is missing or not an object")
    exist = result.get("exist")
    if type(exist) is not bool:
        raise _bad(check, "result.exist", "is not a boolean")
    return exist


def _as_is(body: dict[str, Any]) -> dict[str, Any]:
    return body


class HuaweiImageSearch:
    """The SimilarityIndex protocol over ImageSearch; the index id (``path``) names the upload."""

    def __init__(
        self,
        transport: HuaweiTransport,
        fetcher: MediaFetcher,
        *,
        limit: int = 10,
        workers: ImageWorkers | None = None,
    ) -> None:
        self._t = transport
        self._fetch = fetcher
        self._limit = limit
        self._workers = workers or default_workers()

    async def _file(self, media: Media) -> str:
        fitted = await self._workers.fit_for_search(await self._fetch.bytes_of(media))
        return base64.b64encode(fitted).decode()

    def _parse_search(self, body: dict[str, Any]) -> list[SimilarityMatch]:
        return parse_search(body, self._t.check)

    def _parse_exists(self, body: dict[str, Any]) -> bool:
        return parse_exists(body, self._t.check)

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        matches, attempts = await self._t.call_parsed(
            "POST",
            "/search",
            {
                "file": await self._file(media),
                "limit": self._limit,
                "offset": 0,
                "tags": {"tenant": tenant},
            },
            self._parse_search,
        )
        return Checked(index_metadata.own_matches(matches, tenant), PROVIDER, attempts=attempts)

    async def add(self, media: Media, tenant: str, metadata: str, path: str | None = None) -> str:
        index_path = path or _path(tenant, media)
        await self._t.call(
            "POST",
            "",
            {
                "path": index_path,
                "file": await self._file(media),
                "tags": {"tenant": tenant, "note": metadata[:200]},
            },
        )
        return index_path

    async def remove(self, media: Media, tenant: str, path: str | None = None) -> str | None:
        index_path = path or _path(tenant, media)
        try:
            await self._t.call("DELETE", "", {"path": index_path})
        except PermanentError as exc:
            if exc.code == "IS.0010":  # not in the library: nothing to remove
                return None
            raise
        return index_path

    async def exists(self, path: str) -> bool:
        exist, _ = await self._t.call_parsed("POST", "/check", {"path": path}, self._parse_exists)
        return exist

    async def set_tags(self, path: str, tags: Mapping[str, str]) -> None:
        await self._t.call("PUT", "", {"path": path, "tags": dict(tags)})


def _path(tenant: str, media: Media) -> str:
    """An entry's path, scoped by its tenant: two tenants' entries for one URL never collide, and
    a tenant can remove only its own (the tenant id's grammar has no ``/``)."""
    return f"moderation://{tenant}/{quote(media.filename, safe='')}"
