"""The output side: an idempotent producer (acks=all) polled on the event loop.

Delivery reports run on the loop thread (the sink polls the producer from a loop task), so a
record's ``on_delivery`` callback can touch the service's state directly: no future, no thread hop
and no GIL hand-off per record. ``await send(...)`` is the convenience form for rare records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.errors import DeliveryError
from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["DeliveryCallback", "Sink", "ToolProducer", "delivery_error"]

log = logging.getLogger("consumer.kafka.sink")
DeliveryCallback = Callable[["DeliveryError | None"], None]
Headers = list[tuple[str, str | bytes | None]]

_BUSY_POLL_S = 0.002  # records awaiting acknowledgement: look often (acks gate offset commits)
_IDLE_POLL_S = 0.05


# Errors about one record (its size, its content), not about the producer or the cluster: the record
# can be answered otherwise (a bounded dead letter) and the process goes on.
_RECORD_REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.POLICY_VIOLATION,
    }
)


def delivery_error(what: str, err: KafkaError) -> DeliveryError:
    """``what`` failed with ``err``; ``record_refused`` when the record itself was refused."""
    return DeliveryError(f"{what}: {err.str()}", record_refused=err.code() in _RECORD_REFUSED)


class ToolProducer:
    """An idempotent producer (acks=all) for a tool that sends records one by one and waits for them
    all at the end (``dlq replay``). Kafka's errors come out as ``DeliveryError``."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._producer = Producer({**base_config(settings), "acks": "all", "enable.idempotence": True})

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        try:
            self._producer.produce(topic, value, key, headers=headers)
        except KafkaException as exc:
            raise delivery_error(f"cannot produce to {topic}", exc.args[0]) from None
        self._producer.poll(0)

    def flush(self, within_s: float) -> int:
        """Wait until every record is acknowledged or the time is up; returns how many are not."""
        return int(self._producer.flush(within_s))


class Sink:
    """``produce(..., on_delivery=cb)`` queues a record; ``cb(None)`` runs on the event loop once
    the broker has acknowledged it (acks=all), ``cb(DeliveryError)`` if it never will."""

    def __init__(self, settings: KafkaSettings, extra: dict[str, Any] | None = None) -> None:
        config: dict[str, Any] = {
            **base_config(settings),
            "acks": "all",
            "enable.idempotence": True,
            # real time: at 50 % load linger.ms 5 added 6 ms to a verdict's p50 and 5 to its p99
            # against 0; but 0 cost the framework alone (checks off, thousands of verdicts a second)
            # 60 % more CPU per upload in small produce requests. 1 ms of waiting keeps nearly all
            # the batching (7 % above 5 there); docs/benchmarks.md, "Real time"
            "linger.ms": 1,
            "compression.type": "lz4",
            "delivery.timeout.ms": 120_000,
        }
        config.update(settings.client_config)
        config.update(extra or {})
        self._config = config
        self.producer = Producer(config)
        self._pump: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling for delivery reports on the running loop."""
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._poll_forever(), name="kafka-sink-poll")

    async def _poll_forever(self) -> None:
        failed: Producer | None = None
        while True:
            producer = self.producer  # re-read: a transactional sink may rebuild it
            try:
                producer.poll(0)
            except KafkaException as exc:
                # a producer in a fatal state raises its error here: the pump must live on (its
                # death would leave every later delivery report unserved); the transactional
                # sink rebuilds the producer at its next commit
                if producer is not failed:
                    log.error(
                        "producer failed: %s", exc.args[0].str(), extra={"kafka_error": exc.args[0].name()}
                    )
                    failed = producer
            await asyncio.sleep(_BUSY_POLL_S if len(producer) else _IDLE_POLL_S)

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if on_delivery is not None:
                on_delivery(None if err is None else delivery_error(f"delivery to {topic} failed", err))

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: serve delivery reports to drain it
                self.producer.poll(0.01)
            except KafkaException as exc:
                raise delivery_error(f"cannot produce to {topic}", exc.args[0]) from None

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None) -> None:
        """Produce one record and wait for its acknowledgement."""
        self.start()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(err: DeliveryError | None) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(err)

        self.produce(topic, key, value, headers, settle)
        await future

    async def flush(self, within_s: float) -> int:
        """Wait (polling, so callbacks run here) until every record is acknowledged or the time is
        up; returns how many are still outstanding."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while len(self.producer) and loop.time() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(_BUSY_POLL_S)
        self.producer.poll(0)
        return len(self.producer)

    async def close(self, within_s: float = 30.0) -> None:
        remaining = await self.flush(within_s)
        if remaining:
            log.warning("%d records not delivered at close", remaining)
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        await asyncio.to_thread(self.producer.close)
