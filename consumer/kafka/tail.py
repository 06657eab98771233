"""Reading one topic from its end, in a consumer group of its own, on a thread of its own: every
process of the service sees every record written after it started (the callback relay)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["TopicTail"]


class TopicTail:
    """``on_record(value, headers)`` for each record with a value, called on the tail's thread."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group: str,
        on_record: Callable[[bytes, Any], None],
    ) -> None:
        self.topic = topic
        self._on_record = on_record
        self.assigned = threading.Event()
        self._stop = threading.Event()
        config: dict[str, Any] = {
            **base_config(settings),
            "group.id": f"{group}.{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
        self._consumer = Consumer(config)
        self._consumer.subscribe([topic], on_assign=lambda *_: self.assigned.set())
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(100, 0.2):
                    value = msg.value()
                    if msg.error() or value is None:
                        continue
                    self._on_record(value, msg.headers())
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
