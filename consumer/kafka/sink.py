"""The output side: an idempotent producer (acks=all) whose sends are awaitable."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import KafkaException, Message, Producer

from ..config import KafkaSettings
from .common import base_config

__all__ = ["DeliveryError", "Sink"]

log = logging.getLogger("consumer.kafka.sink")


class DeliveryError(RuntimeError):
    """The broker did not acknowledge a record within the delivery timeout."""


class Sink:
    """``await send(...)`` returns once the broker has acknowledged the record (acks=all)."""

    def __init__(self, settings: KafkaSettings) -> None:
        config: dict[str, Any] = {
            **base_config(settings),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "delivery.timeout.ms": 120_000,
        }
        config.update(settings.client_config)
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-sink-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: Any, _msg: Message) -> None:
            if err is not None:
                loop.call_soon_threadsafe(
                    _fail, future, DeliveryError(f"delivery to {topic} failed: {err.str()}")
                )
            else:
                loop.call_soon_threadsafe(_succeed, future)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # local queue full: wait for deliveries to drain it
                await asyncio.sleep(0.01)
            except KafkaException as exc:
                raise DeliveryError(f"cannot produce to {topic}: {exc.args[0].str()}") from None
        await future

    def flush(self, timeout: float = 30.0) -> int:
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 30.0) -> None:
        remaining = self.flush(timeout)
        if remaining:
            log.warning("%d records not delivered at close", remaining)
        self._stop.set()
        self._poller.join(timeout=2)


def _succeed(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
