"""``python -m consumer dlq replay``: re-publish chosen dead letters to the topic they came from
(the uploads topic, or an index maintenance topic) after a fix.

Dead letters are chosen by dead-letter-topic partition and offset range and/or error class; each
is re-published with its original key and value (a missing key becomes the upload id, the one fix a
replay can make itself) and a ``dlq.replayed.from`` header naming where it came from. The scan
stops at the end the topic had when the replay started, so replays never chase their own output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Producer

from consumer.config import Settings
from consumer.core.deadletter import DeadLetter
from consumer.errors import RegistryUnavailable, SerializationError
from consumer.kafka.common import base_config
from consumer.kafka.scan import scan, watermarks
from consumer.schema_registry import codec_for
from consumer.serde import decode_blocking

__all__ = ["REPLAYED_FROM", "ReplaySummary", "Selection", "replay"]

log = logging.getLogger("consumer.replay")
REPLAYED_FROM = "dlq.replayed.from"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to replay (pure). Offsets are the dead letter topic's, inclusive."""

    partition: int | None = None
    first: int | None = None
    last: int | None = None
    error_classes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.first is not None and self.last is not None and self.first > self.last:
            raise ValueError(f"empty offset range {self.first}..{self.last}")

    def covers(self, partition: int, offset: int) -> bool:
        if self.partition is not None and partition != self.partition:
            return False
        return (self.first is None or offset >= self.first) and (self.last is None or offset <= self.last)

    def matches(self, partition: int, offset: int, error_class: str) -> bool:
        return self.covers(partition, offset) and (
            not self.error_classes or error_class in self.error_classes
        )


@dataclass
class ReplaySummary:
    scanned: int = 0
    matched: int = 0
    replayed: int = 0
    unreadable: int = 0
    by_class: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"scanned {self.scanned}, matched {self.matched}, replayed {self.replayed}"]
        if self.unreadable:
            lines.append(f"{self.unreadable} records on the topic are not dead letters (left alone)")
        lines += [f"  {name}: {count}" for name, count in sorted(self.by_class.items())]
        return "\n".join(lines)


def replay(
    settings: Settings,
    selection: Selection,
    *,
    dry_run: bool = False,
    to_topic: str | None = None,
    echo: Callable[[str], None] = print,
) -> ReplaySummary:
    k = settings.kafka
    codec = codec_for(settings)  # dead letters in either framing
    producer = None if dry_run else Producer({**base_config(k), "acks": "all", "enable.idempotence": True})
    summary = ReplaySummary()

    def bounds(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        found = {}
        for partition in partitions:
            low, high = watermarks(consumer, topic, partition)
            found[partition] = (max(low, selection.first or 0), high)
        return found

    try:
        with scan(k, k.dlq_topic, "dlq-replay", bounds, selection.partition) as records:
            for msg in records:
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if not selection.covers(partition, offset):
                    continue
                summary.scanned += 1
                try:
                    letter = DeadLetter.from_avro(
                        decode_blocking(codec, msg.value(), "DeadLetter", k.dlq_topic)
                    )
                except RegistryUnavailable as exc:
                    raise RuntimeError(f"replay stopped: {exc}") from None
                except (SerializationError, KeyError, TypeError, ValueError):
                    summary.unreadable += 1
                    continue
                if not selection.matches(partition, offset, letter.failure.error_class):
                    continue
                summary.matched += 1
                name = letter.failure.error_class
                summary.by_class[name] = summary.by_class.get(name, 0) + 1
                key = letter.original_key or (letter.upload_id.encode() if letter.upload_id else None)
                target = to_topic or letter.source_topic
                echo(
                    f"{'would replay' if dry_run else 'replay'} {k.dlq_topic}[{partition}]@{offset}"
                    f" ({name}, upload {letter.upload_id or '?'}) -> {target}"
                )
                if producer is not None:
                    origin = f"{k.dlq_topic}:{partition}:{offset}".encode()
                    producer.produce(target, letter.original_value, key, headers=[(REPLAYED_FROM, origin)])
                    producer.poll(0)
                    summary.replayed += 1
        if producer is not None and producer.flush(30):
            raise RuntimeError("replayed records were not acknowledged by the broker within 30s")
    except KafkaException as exc:
        raise RuntimeError(f"replay failed: {exc.args[0].str()}") from None
    finally:
        codec.close()
    return summary
