"""Async task callbacks: receive them over HTTP, relay them through Kafka to every process, and
hand each to the process that waits for that task id.

Why a relay: with several processes behind one load balancer, a provider's callback reaches any
of them. The receiver verifies the secret token in the path, publishes the body to the callback
topic and acknowledges only after the broker has it (so the provider retries otherwise). Every
process reads the whole callback topic (its own consumer group) and completes the tasks it holds;
callbacks for tasks it does not hold are ignored. Resends are idempotent: the first completes the
task, later ones are counted and dropped. A task whose callback never comes is polled, then fails
closed at the check's deadline.

The receiver trusts nothing in a body but the token: bodies over ``MAX_CALLBACK_BYTES`` answer 413,
bodies nested deeper than ``MAX_CALLBACK_DEPTH`` answer 400, and only the fields the Hive parsers
read are relayed (``reduce_task_body``, same shape). A reduced body still over the relay limit
(below Kafka's 1 MB message limit) is relayed as a marker ``{"task_id": ..., "too_large": true}``
and its waiter polls the task at once. The early-callback buffer is bounded in count and bytes.

Relayed bodies are signed (``callbacks.relay``)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from consumer.callbacks.bodies import (
    EARLY_LIMIT_BYTES,
    INLINE_PARSE_BYTES,
    MAX_CALLBACK_BYTES,
    MAX_CALLBACK_DEPTH,
    MAX_TASK_ID_LENGTH,
    RELAY_LIMIT_BYTES,
    Body,
    RelayDecision,
    is_too_large,
    prepare_relay,
    reduce_task_body,
    task_id_of,
)
from consumer.kafka.sink import Headers
from consumer.telemetry import metrics, tracing

__all__ = [
    "EARLY_LIMIT_BYTES",
    "MAX_CALLBACK_BYTES",
    "MAX_CALLBACK_DEPTH",
    "MAX_TASK_ID_LENGTH",
    "RELAY_LIMIT_BYTES",
    "AsyncTasks",
    "CallbackReceiver",
    "Correlator",
    "RelayDecision",
    "is_too_large",
    "prepare_relay",
    "reduce_task_body",
    "task_id_of",
]

log = logging.getLogger("consumer.callbacks")


class Correlator:
    """Task id ⇒ the future its waiter awaits. Pure bookkeeping on the event loop thread.

    Callbacks may arrive before the submit call has returned the task id (a fast provider), so
    unclaimed bodies wait in a buffer bounded in count and in (approximate) bytes, oldest evicted.
    """

    def __init__(self, early_limit: int = 10_000, early_limit_bytes: int = EARLY_LIMIT_BYTES) -> None:
        self._waiting: dict[str, asyncio.Future[Body]] = {}
        self._early: OrderedDict[str, tuple[Body, int]] = OrderedDict()
        self._early_bytes = 0
        self._done: OrderedDict[str, None] = OrderedDict()
        self._limit = early_limit
        self._limit_bytes = early_limit_bytes

    def expect(self, task_id: str) -> asyncio.Future[Body]:
        future = self._waiting.get(task_id)
        if future is None:
            future = self._waiting[task_id] = asyncio.get_running_loop().create_future()
            early = self._early.pop(task_id, None)
            if early is not None:
                self._early_bytes -= early[1]
                future.set_result(early[0])
        return future

    def deliver(self, body: Body, size: int | None = None) -> str:
        """Returns what happened: completed, duplicate, early or unknown (no task id).

        ``size``: the body's encoded length (estimated when not given), counted while it waits.
        """
        task_id = task_id_of(body)
        if task_id is None:
            return "unknown"
        if task_id in self._done:
            return "duplicate"
        future = self._waiting.get(task_id)
        if future is None:
            if task_id in self._early:
                return "duplicate"
            self._keep_early(task_id, body, _encoded_size(body) if size is None else size)
            return "early"
        if future.done():
            return "duplicate"
        future.set_result(body)
        self._remember(task_id)
        return "completed"

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)
        self._remember(task_id)

    def _keep_early(self, task_id: str, body: Body, size: int) -> None:
        self._early[task_id] = (body, size)
        self._early_bytes += size
        while self._early and (len(self._early) > self._limit or self._early_bytes > self._limit_bytes):
            _, (_, evicted) = self._early.popitem(last=False)
            self._early_bytes -= evicted

    def _remember(self, task_id: str) -> None:
        self._done[task_id] = None
        while len(self._done) > self._limit:
            self._done.popitem(last=False)

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiting.values() if not f.done())

    @property
    def early_bytes(self) -> int:
        """Approximate bytes of the bodies waiting for their task id."""
        return self._early_bytes


def _encoded_size(body: Body) -> int:
    try:
        return len(orjson.dumps(body))
    except TypeError:  # orjson.JSONEncodeError too
        return len(repr(body))


Poll = Callable[[str], Awaitable[Body | None]]


class AsyncTasks:
    """Waits for one submitted task: callback first, polling after ``poll_after_s``.

    The overall deadline is the caller's (``asyncio.timeout``); this never gives up by itself.
    """

    def __init__(
        self, correlator: Correlator, callback_url: str, *, poll_after_s: float, poll_interval_s: float
    ) -> None:
        self.correlator = correlator
        self.callback_url = callback_url
        self._poll_after = poll_after_s
        self._poll_interval = poll_interval_s

    def callback_target(self) -> str:
        """The callback URL for a task submitted now: with tracing on, it carries the current
        ``traceparent`` as a query parameter, so the process the callback reaches joins the trace."""
        traceparent = tracing.current_traceparent()
        return self.callback_url if traceparent is None else f"{self.callback_url}?traceparent={traceparent}"

    async def wait(self, task_id: str, poll: Poll) -> Body:
        waiter = self.correlator.expect(task_id)
        metrics.PENDING_TASKS.inc()
        try:
            body = await self._callback(waiter, self._poll_after)
            while body is None:
                metrics.TASK_POLLS.inc()
                body = await poll(task_id)
                if body is None and waiter.done():
                    await asyncio.sleep(
                        self._poll_interval
                    )  # its callback was the marker: only polls are left
                elif body is None:
                    body = await self._callback(waiter, self._poll_interval)
            return body
        finally:
            metrics.PENDING_TASKS.dec()
            self.correlator.forget(task_id)

    async def _callback(self, waiter: asyncio.Future[Body], wait_s: float) -> Body | None:
        """The callback's body if it comes within ``wait_s``; None if not, or if it only says the
        task finished with a result too large to relay (poll it now)."""
        try:
            body = await asyncio.wait_for(asyncio.shield(waiter), wait_s)
        except TimeoutError:
            return None
        if is_too_large(body):
            log.info("callback too large to relay: polling the task", extra={"task_id": task_id_of(body)})
            return None
        return body


_REFUSED = {
    "invalid": (400, "body is not JSON"),
    "too_deep": (400, "body is nested too deeply"),
    "no_task_id": (400, "no task id in the body"),
}


class CallbackReceiver:
    """``POST /callbacks/{token}``: verify, bound, reduce, relay to Kafka, then acknowledge."""

    def __init__(
        self,
        token: str,
        relay: Callable[[bytes, str | None, Headers | None], Awaitable[None]],
        *,
        max_bytes: int = MAX_CALLBACK_BYTES,
        relay_limit_bytes: int = RELAY_LIMIT_BYTES,
        max_depth: int = MAX_CALLBACK_DEPTH,
    ) -> None:
        self._token = token.encode()
        self._relay = relay
        self._max_bytes = max_bytes
        self._relay_limit = relay_limit_bytes
        self._max_depth = max_depth

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/callbacks/{token}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.match_info["token"].encode(), self._token):
            metrics.CALLBACKS.labels("rejected").inc()
            return web.json_response({"error": "not found"}, status=404)  # no hint that the path exists
        raw = await self._read(request)
        if raw is None:
            metrics.CALLBACKS.labels("oversize").inc()
            return web.json_response({"error": f"body over {self._max_bytes} bytes"}, status=413)
        decision = await self._decide(raw)
        metrics.CALLBACKS.labels(decision.outcome).inc()
        if not decision.relay:
            status, error = _REFUSED[decision.outcome]
            return web.json_response({"error": error}, status=status)
        with tracing.server_span("POST /callbacks/{token}", request.query.get("traceparent")):
            await self._relay(decision.payload, decision.task_id, tracing.output_headers(None))
        return web.json_response({"ok": True})

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None once it is over the limit (read no further)."""
        if request.content_length is not None and request.content_length > self._max_bytes:
            return None
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > self._max_bytes:
                return None
        return bytes(body)

    async def _decide(self, raw: bytes) -> RelayDecision:
        def decide() -> RelayDecision:
            return prepare_relay(raw, max_depth=self._max_depth, relay_limit_bytes=self._relay_limit)

        if len(raw) <= INLINE_PARSE_BYTES:
            return decide()
        return await asyncio.to_thread(decide)  # a few MB take a few hundred ms: not on the loop
