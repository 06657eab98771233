"""The relay between processes: a received callback is published to the callback topic, signed,
and every process reads the whole topic and hands each body to the task that waits for it.

Whoever can write the callback topic could otherwise complete a pending task with a forged result,
so each relayed body is signed (``RELAY_SIGNATURE``: HMAC-SHA256 of the value, keyed by the
callback token every process shares) and the listener drops, and counts as ``forged``, any record
without a valid signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from consumer.callbacks.bodies import Body, task_id_of
from consumer.callbacks.receiver import Correlator
from consumer.kafka.sink import Headers, Sink
from consumer.kafka.tail import TopicTail
from consumer.settings_sections import KafkaSettings
from consumer.telemetry import metrics, tracing

__all__ = ["RELAY_SIGNATURE", "RelayListener", "kafka_relay", "relay_signature", "signed"]

log = logging.getLogger("consumer.callbacks")
RELAY_SIGNATURE = "moderation.callback.signature"


def relay_signature(key: bytes, value: bytes) -> bytes:
    """The signature a relayed callback carries: hex HMAC-SHA256 of its value under ``key``."""
    return hmac.new(key, value, hashlib.sha256).hexdigest().encode()


def signed(key: bytes, value: bytes | None, headers: Any) -> bool:
    """Whether a relayed record carries ``relay_signature`` of its value (exactly one such header)."""
    if value is None or not headers:
        return False
    found = [v for name, v in headers if name == RELAY_SIGNATURE]
    return (
        len(found) == 1
        and isinstance(found[0], bytes)
        and hmac.compare_digest(found[0], relay_signature(key, value))
    )


def kafka_relay(
    sink: Sink, topic: str, key: bytes
) -> Callable[[bytes, str | None, Headers | None], Awaitable[None]]:
    async def relay(raw: bytes, task_id: str | None, headers: Headers | None) -> None:
        signature: Headers = [(RELAY_SIGNATURE, relay_signature(key, raw))]
        await sink.send(
            topic, None if task_id is None else task_id.encode(), raw, [*(headers or []), *signature]
        )

    return relay


class RelayListener:
    """Reads the whole callback topic (a group of its own) and delivers bodies to the correlator."""

    def __init__(
        self, settings: KafkaSettings, correlator: Correlator, loop: asyncio.AbstractEventLoop, key: bytes
    ) -> None:
        self._key = key
        self._correlator = correlator
        self._loop = loop
        self._topic = settings.callback_topic
        self._tail = TopicTail(settings, self._topic, f"{settings.group_id}.callbacks", self._received)
        self.assigned = self._tail.assigned

    def start(self) -> None:
        self._tail.start()

    def _received(self, value: bytes, headers: Any) -> None:
        """On the tail's thread: what is signed and an object goes on to the loop."""
        if not signed(self._key, value, headers):
            self._loop.call_soon_threadsafe(self._forged)
            return
        try:
            body = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if isinstance(body, dict):
            self._loop.call_soon_threadsafe(self._deliver, body, len(value), headers)

    def _forged(self) -> None:
        metrics.CALLBACK_DELIVERIES.labels("forged").inc()
        log.warning("relayed callback without a valid signature dropped", extra={"topic": self._topic})

    def _deliver(self, body: Body, size: int, headers: Any = None) -> None:
        outcome = self._correlator.deliver(body, size)
        metrics.CALLBACK_DELIVERIES.labels(outcome).inc()
        if outcome == "completed":  # the process whose task it was continues the trace
            tracing.relay_received(self._topic, headers, task_id_of(body))
        if outcome == "duplicate":
            log.info(
                "duplicate callback ignored",
                extra={"task_id": task_id_of(body), "resent_on": body.get("resent_on")},
            )

    def stop(self) -> None:
        self._tail.stop()
