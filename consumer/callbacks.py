"""Async task callbacks: receive them over HTTP, relay them through Kafka to every process, and
hand each to the process that waits for that task id.

Why a relay: with several processes behind one load balancer, a provider's callback reaches any
of them. The receiver verifies the secret token in the path, publishes the body to the callback
topic and acknowledges only after the broker has it (so the provider retries otherwise). Every
process reads the whole callback topic (its own consumer group) and completes the tasks it holds;
callbacks for tasks it does not hold are ignored. Resends are idempotent: the first completes the
task, later ones are counted and dropped. A task whose callback never comes is polled, then fails
closed at the check's deadline.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from confluent_kafka import Consumer

from .config import KafkaSettings
from .kafka.common import base_config
from .kafka.sink import Sink
from .telemetry import metrics

__all__ = ["AsyncTasks", "CallbackReceiver", "Correlator", "RelayListener", "task_id_of"]

log = logging.getLogger("consumer.callbacks")
Body = dict[str, Any]


def task_id_of(body: Mapping[str, Any]) -> str | None:
    value = body.get("task_id") or body.get("id")
    return None if value is None else str(value)


class Correlator:
    """Task id ⇒ the future its waiter awaits. Pure bookkeeping on the event loop thread.

    Callbacks may arrive before the submit call has returned the task id (a fast provider), so
    unclaimed bodies wait in a bounded buffer.
    """

    def __init__(self, early_limit: int = 10_000) -> None:
        self._waiting: dict[str, asyncio.Future[Body]] = {}
        self._early: OrderedDict[str, Body] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._limit = early_limit

    def expect(self, task_id: str) -> asyncio.Future[Body]:
        future = self._waiting.get(task_id)
        if future is None:
            future = self._waiting[task_id] = asyncio.get_running_loop().create_future()
            early = self._early.pop(task_id, None)
            if early is not None:
                future.set_result(early)
        return future

    def deliver(self, body: Body) -> str:
        """Returns what happened: completed, duplicate, early or unknown (no task id)."""
        task_id = task_id_of(body)
        if task_id is None:
            return "unknown"
        if task_id in self._done:
            return "duplicate"
        future = self._waiting.get(task_id)
        if future is None:
            if task_id in self._early:
                return "duplicate"
            self._early[task_id] = body
            while len(self._early) > self._limit:
                self._early.popitem(last=False)
            return "early"
        if future.done():
            return "duplicate"
        future.set_result(body)
        self._remember(task_id)
        return "completed"

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)
        self._remember(task_id)

    def _remember(self, task_id: str) -> None:
        self._done[task_id] = None
        while len(self._done) > self._limit:
            self._done.popitem(last=False)

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiting.values() if not f.done())


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

    async def wait(self, task_id: str, poll: Poll) -> Body:
        waiter = self.correlator.expect(task_id)
        try:
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), self._poll_after)
            except TimeoutError:
                pass
            while True:
                metrics.TASK_POLLS.inc()
                body = await poll(task_id)
                if body is not None:
                    return body
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), self._poll_interval)
                except TimeoutError:
                    continue
        finally:
            self.correlator.forget(task_id)


class CallbackReceiver:
    """``POST /callbacks/{token}``: verify, relay to Kafka, then acknowledge."""

    def __init__(self, token: str, relay: Callable[[bytes, str | None], Awaitable[None]]) -> None:
        self._token = token.encode()
        self._relay = relay

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/callbacks/{token}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.match_info["token"].encode(), self._token):
            metrics.CALLBACKS.labels("rejected").inc()
            return web.json_response({"error": "not found"}, status=404)  # no hint that the path exists
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            metrics.CALLBACKS.labels("invalid").inc()
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or task_id_of(body) is None:
            metrics.CALLBACKS.labels("invalid").inc()
            return web.json_response({"error": "no task id in the body"}, status=400)
        await self._relay(raw, task_id_of(body))
        metrics.CALLBACKS.labels("relayed").inc()
        return web.json_response({"ok": True})


def kafka_relay(sink: Sink, topic: str) -> Callable[[bytes, str | None], Awaitable[None]]:
    async def relay(raw: bytes, task_id: str | None) -> None:
        await sink.send(topic, None if task_id is None else task_id.encode(), raw)

    return relay


class RelayListener:
    """Reads the whole callback topic (a group of its own) and delivers bodies to the correlator."""

    def __init__(
        self, settings: KafkaSettings, correlator: Correlator, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._correlator = correlator
        self._loop = loop
        self.assigned = threading.Event()
        self._stop = threading.Event()
        config: dict[str, Any] = {
            **base_config(settings),
            "group.id": f"{settings.group_id}.callbacks.{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
        self._consumer = Consumer(config)
        self._consumer.subscribe([settings.callback_topic], on_assign=lambda *_: self.assigned.set())
        self._thread = threading.Thread(target=self._run, name="callback-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(100, 0.2):
                    value = msg.value()
                    if msg.error() or value is None:
                        continue
                    try:
                        body = json.loads(value)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    if isinstance(body, dict):
                        self._loop.call_soon_threadsafe(self._deliver, body)
        finally:
            self._consumer.close()

    def _deliver(self, body: Body) -> None:
        outcome = self._correlator.deliver(body)
        metrics.CALLBACK_DELIVERIES.labels(outcome).inc()
        if outcome == "duplicate":
            log.info(
                "duplicate callback ignored",
                extra={"task_id": task_id_of(body), "resent_on": body.get("resent_on")},
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
