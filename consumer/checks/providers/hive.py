"""Hive clients: task API (visual, text, CSAM hash matching) and custom index. Answers are parsed
in ``hive_answers``; a malformed one (``ProviderAnswerError``) is retried like any transient error,
then the check fails closed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from consumer.checks.media import Media, MediaPolicy
from consumer.checks.redaction import Redactor
from consumer.checks.retry import RetryPolicy
from consumer.core import index_metadata
from consumer.core.records import SimilarityMatch
from consumer.core.secrets import RotatingSecret
from consumer.errors import ConfigError, PermanentError, ProviderAnswerError
from consumer.policy.decision import Frame
from consumer.transports.httpclient import Answer, HttpClient

if TYPE_CHECKING:
    from consumer.callbacks.receiver import AsyncTasks
from consumer.checks.providers import Checked, CsamAnswer
from consumer.checks.providers.hive_answers import (
    added_id,
    as_is,
    check_response,
    model_of,
    parse_classification,
    parse_csam,
    parse_matches,
    raise_task_error,
    removed_id,
    task_id_of_ack,
)
from consumer.checks.providers.http import ProviderEndpoint, ProviderGate

__all__ = [
    "HiveClassifier",
    "HiveCustomIndex",
    "HiveHashMatcher",
    "HiveTasks",
    "HiveTransport",
    "check_response",
    "parse_classification",
    "parse_csam",
    "parse_matches",
    "raise_task_error",
]

T = TypeVar("T")


PROVIDER = "hive"


class HiveTransport:
    """POSTs one Hive form request with the project's key, maps errors, retries transient ones."""

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        key: SecretStr | RotatingSecret,
        check: str,
        retry: RetryPolicy,
        timeout_s: float = 10.0,
        gate: ProviderGate | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        # read per request (a rotated key file replaces it: runtime.secrets)
        self._key = (
            key
            if isinstance(key, RotatingSecret)
            else RotatingSecret(f"hive.{check}_key", key.get_secret_value())
        )
        self.redactor = redactor if redactor is not None else Redactor()
        # an error body echoing the key must not carry it into a message, nor one it is given later
        self.redactor.register(self._key.current())
        self._key.subscribe(self.redactor.register)
        self.check = check
        self._endpoint = ProviderEndpoint(
            http, check=check, provider="Hive", retry=retry, gate=gate, timeout_s=timeout_s
        )

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"token {self._key.current()}", "accept": "application/json"}

    async def post_parsed(
        self,
        path: str,
        fields: Mapping[str, str],
        files: Mapping[str, tuple[str, bytes, str]] | None,
        parse: Callable[[dict[str, Any]], T],
    ) -> tuple[T, int]:
        """``parse`` of the answer's body; a malformed answer (ProviderAnswerError) is retried too."""
        return await self._endpoint.call(
            "POST",
            self._base + path,
            lambda answer: parse(check_response(answer, self.check, redactor=self.redactor)),
            data=dict(fields),
            files=dict(files) if files else None,
            headers=self._headers(),
        )

    async def get_task(self, task_id: str, version: str = "v1") -> dict[str, Any] | None:
        """A finished async task's body, or None while Hive is still processing it (HTTP 202)."""

        def mapped(answer: Answer) -> dict[str, Any] | None:
            if answer.status_code == 202:
                return None
            return check_response(answer, self.check, redactor=self.redactor, task_errors=False)

        url = f"{self._base}/api/{version}/task/{task_id}"
        body, _ = await self._endpoint.call("GET", url, mapped, headers=self._headers())
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
        return await self.run(path, content, as_is, asynchronous=asynchronous, extra=extra)

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
            raise ConfigError("callbacks", "async Hive tasks need the callback receiver")
        check = self.transport.check
        task_id, attempts = await self.transport.post_parsed(
            f"{path}/async",
            {**fields, "callback_url": self._tasks.callback_target()},
            files,
            lambda ack: task_id_of_ack(ack, check),
        )
        body = await self._tasks.wait(task_id, lambda t: self.transport.get_task(t, self._version))
        raise_task_error(body, check, redactor=self.transport.redactor)
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
        return parse_classification(body, check=check), model_of(body, check)

    async def classify(self, content: Media | str) -> Checked[Sequence[Frame]]:
        (frames, (model, version)), attempts = await self._tasks.run(
            self._tasks.task_path, content, self._parse, asynchronous=self._async
        )
        return Checked(frames, PROVIDER, model, version, attempts)


class HiveHashMatcher:
    """CSAM hash matching (Thorn) with the CSAM project's key (``hive.csam_endpoint: hash``), or the
    combined endpoint (``combined``): hash first, then, without a match, its classifier's classes
    (``csam``/``pornography``/``other``) in ``CsamAnswer.classes``. A combined answer that has
    neither a match nor classes is an error (fail closed); a hash-only answer's classes are ignored."""

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False, combined: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous
        self.combined = combined

    def _parse(self, body: dict[str, Any]) -> tuple[CsamAnswer, tuple[str | None, str | None]]:
        check = self._tasks.check
        answer = parse_csam(body, check=check)
        if not self.combined:
            answer = CsamAnswer(answer.result)
        elif not answer.result.matched and not answer.classes:
            raise ProviderAnswerError(
                f"{check}: Hive answer: the combined endpoint gave neither a match nor classes", check=check
            )
        return answer, model_of(body, check)

    async def match(self, media: Media) -> Checked[CsamAnswer]:
        (answer, (model, version)), attempts = await self._tasks.run(
            self._tasks.task_path, media, self._parse, asynchronous=self._async
        )
        return Checked(answer, PROVIDER, model, version, attempts)


class HiveCustomIndex:
    """Custom index add / query / remove (``/api/v2/custom_index/*/{sync,async}``).

    Hive's index has no tenant scoping: the owning tenant is carried in the metadata string
    (``core.index_metadata``), and a match counts only when its stored tenant is the upload's
    exactly. Hive removes by image whoever added it, so ``remove`` asks first and removes only
    when this tenant has an entry for the image and no other tenant does (else a PermanentError).
    """

    def __init__(self, tasks: HiveTasks, *, asynchronous: bool = False) -> None:
        self._tasks = tasks
        self._async = asynchronous

    def _matches(self, body: dict[str, Any]) -> list[SimilarityMatch]:
        return parse_matches(body, check=self._tasks.check)

    def added_id(self, body: dict[str, Any]) -> str:
        return added_id(body, self._tasks.check)

    def removed_id(self, body: dict[str, Any]) -> str | None:
        return removed_id(body, self._tasks.check)

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        found, attempts = await self._tasks.run(
            "/api/v2/custom_index/query", media, self._matches, asynchronous=self._async
        )
        return Checked(index_metadata.own_matches(found, tenant), PROVIDER, attempts=attempts)

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        sha, _ = await self._tasks.run(
            "/api/v2/custom_index/add",
            media,
            self.added_id,
            asynchronous=self._async,
            extra={"metadata": index_metadata.encode(tenant, metadata)},
        )
        return sha

    async def remove(self, media: Media, tenant: str) -> str | None:
        found, _ = await self._tasks.run(
            "/api/v2/custom_index/query", media, self._matches, asynchronous=self._async
        )
        owners = {(meta.tenant if (meta := index_metadata.parse(m.metadata)) else None) for m in found}
        if tenant not in owners:
            return None
        if owners != {tenant}:
            raise PermanentError(
                f"{self._tasks.check}: another tenant's index entry matches this image too;"
                " Hive removes by image, so nothing was removed",
                check=self._tasks.check,
                code="shared_entry",
                content=False,
            )
        removed, _ = await self._tasks.run(
            "/api/v2/custom_index/remove", media, self.removed_id, asynchronous=self._async
        )
        return removed
