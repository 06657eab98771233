"""Dead letter replay, the library of ``python -m consumer dlq replay``: re-publish chosen dead
letters to the topic they came from (the uploads topic, or an index maintenance topic) after a fix.

Dead letters are chosen by dead-letter-topic partition and offset range and/or error class; each
is re-published with its original key and value (a missing key becomes the upload id, the one fix a
replay can make itself) and provenance headers (``dlq.replayed.from``: the letter's own position;
``dlq.replayed.source``: the record's original position; ``dlq.replayed.error.class``). The scan
stops at the end the topic had when the replay started, so replays never chase their own output.

Whoever can write the dead-letter topic writes what replay reads, and replay publishes with the
service's credentials, so a letter is trusted for nothing: it is replayed only to one of the
service's input topics (an output, the dead-letter topic itself or an unknown topic is refused and
reported, never produced), and only when its value decodes, under an accepted writer schema, as
the record that input topic carries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from consumer.config import Settings
from consumer.core.deadletter import DeadLetter
from consumer.core.records import INPUT_RECORDS
from consumer.errors import BrokerError, ConfigError, RegistryUnavailable, SerializationError, ToolError
from consumer.kafka.scan import Offsets, scan
from consumer.kafka.sink import ToolProducer
from consumer.schema_registry import codec_for, input_schemas
from consumer.serde import decode_blocking

__all__ = [
    "REPLAYED_ERROR_CLASS",
    "REPLAYED_FROM",
    "REPLAYED_SOURCE",
    "ReplaySummary",
    "Selection",
    "refusal",
    "replay",
]

log = logging.getLogger("consumer.replay")
REPLAYED_FROM = "dlq.replayed.from"
REPLAYED_SOURCE = "dlq.replayed.source"
REPLAYED_ERROR_CLASS = "dlq.replayed.error.class"


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
    refused: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    by_target: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        counts = f"matched {self.matched}, replayed {self.replayed}, refused {self.refused}"
        lines = [f"scanned {self.scanned}, {counts}"]
        if self.unreadable:
            lines.append(f"{self.unreadable} records on the topic are not dead letters (left alone)")
        lines += [f"  {name}: {count}" for name, count in sorted(self.by_class.items())]
        lines += [f"  -> {topic}: {count}" for topic, count in sorted(self.by_target.items())]
        return "\n".join(lines)


def refusal(target: str, inputs: Mapping[str, str], decode: Callable[[str, str], object]) -> str | None:
    """Why a letter must not be replayed to ``target`` (None when it may): the topic is not one of
    ``inputs`` (topic -> record name), or ``decode(topic, record name)`` fails on its value."""
    name = inputs.get(target)
    if name is None:
        return f"names topic {target!r}, which is not an input ({', '.join(sorted(inputs))})"
    try:
        decode(target, name)
    except RegistryUnavailable:
        raise
    except Exception as exc:  # SerializationError, or a record that breaks its schema's contract
        return f"its value is not a {name}: {exc}"
    return None


def replay(
    settings: Settings,
    selection: Selection,
    *,
    dry_run: bool = False,
    to_topic: str | None = None,
    echo: Callable[[str], None],
) -> ReplaySummary:
    """Replay the dead letters ``selection`` chooses; ``echo`` hears one line per letter (replayed,
    or refused and why). ToolError when the replay had to stop (registry or broker)."""
    k = settings.kafka
    inputs = input_schemas(k)
    if to_topic is not None and to_topic not in inputs:
        raise ConfigError("--to-topic", f"{to_topic!r} is not an input topic ({', '.join(sorted(inputs))})")
    codec = codec_for(settings)  # dead letters in either framing
    producer = None if dry_run else ToolProducer(k)
    summary = ReplaySummary()

    def bounds(offsets: Offsets, partitions: list[int]) -> dict[int, tuple[int, int]]:
        found = {}
        for partition in partitions:
            low, high = offsets.watermarks(partition)
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
                    raise ToolError(f"replay stopped: {exc}") from None
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
                upload_id = (letter.upload_id or "?")[:80]
                where = f"{k.dlq_topic}[{partition}]@{offset} ({name[:80]}, upload {upload_id})"
                value = letter.original_value

                def decode(topic: str, record: str, value: bytes | None = value) -> object:
                    return INPUT_RECORDS[record](decode_blocking(codec, value, record, topic))

                try:
                    refused = refusal(target, inputs, decode)
                except RegistryUnavailable as exc:
                    raise ToolError(f"replay stopped: {exc}") from None
                if refused is not None:
                    summary.refused += 1
                    echo(f"refused {where}: {refused[:300]!a}"[:400])
                    continue
                summary.by_target[target] = summary.by_target.get(target, 0) + 1
                echo(f"{'would replay' if dry_run else 'replay'} {where} -> {target}")
                if producer is not None:
                    source = f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}"
                    headers: list[tuple[str, str | bytes | None]] = [
                        (REPLAYED_FROM, f"{k.dlq_topic}:{partition}:{offset}".encode()),
                        (REPLAYED_SOURCE, source.encode()),
                        (REPLAYED_ERROR_CLASS, name.encode()),
                    ]
                    producer.send(target, key, value, headers)
                    summary.replayed += 1
        if producer is not None and producer.flush(30):
            raise ToolError("replayed records were not acknowledged by the broker within 30s")
    except BrokerError as exc:
        raise ToolError(f"replay failed: {exc}") from None
    finally:
        codec.close()
    return summary
