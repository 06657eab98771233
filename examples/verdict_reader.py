"""Read moderation verdicts from your own service, with confluent-kafka alone.

    pip install 'confluent-kafka[avro,schemaregistry]'
    python verdict_reader.py --bootstrap localhost:9092 --registry http://localhost:8081 \\
        --topic moderation.verdicts --topic uploads.dlq --group my-service

What every reader of the service's outputs must do, and this one does (docs/reading.md):

- ``isolation.level: read_committed``: in the service's exactly_once mode a transaction can abort
  (a restart, a lost broker), and a ``read_uncommitted`` reader would see its verdicts.
- Deduplicate: at_least_once delivery can write a verdict twice (after a crash or a rebalance).
  ``verdict_id`` is the idempotency key (one per upload and policy version; a review copy or an
  escalation carries its verdict's id on its own topic); a dead letter's is where its record came
  from. This reader remembers the last keys in memory; your service should upsert by
  ``verdict_id`` or keep the ids it applied together with what it did.
- Store an offset only after its record was handled, so a crash re-reads, never skips.

Each record is Avro in the Confluent wire format: the registry gives the writer's schema by the id
in the record. Pass ``--reader-schema ModerationVerdict.avsc`` (verdict topics only) to pin the
version your code was written against: newer verdicts (added optional fields) are then read as
that version. One line per record: ``<upload_id>  <decision>  <check:label, ...>  (policy <v>)``
for a verdict, ``<upload_id>  DEAD  <error class>  (<topic>:<partition>:<offset>)`` for a dead letter.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from confluent_kafka import DeserializingConsumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer


def handle(record: dict[str, Any]) -> None:
    """Your code goes here: this one prints a line per verdict or dead letter."""
    if "error_class" in record:  # a DeadLetter
        where = f"{record['source_topic']}:{record['source_partition']}:{record['source_offset']}"
        print(f"{record['upload_id'] or '-'}  {'DEAD':<8}  {record['error_class']}  ({where})")
        return
    reasons = ", ".join(f"{r['check']}:{r['label']}" for r in record["reasons"]) or "-"
    print(f"{record['upload_id']}  {record['decision']:<8}  {reasons}  (policy {record['policy_version']})")


def idempotency_key(topic: str, record: dict[str, Any]) -> str:
    """``verdict_id`` for a verdict; where its input came from for a dead letter (per topic: the
    review and escalation topics carry copies of the verdict)."""
    if "verdict_id" in record:
        return f"{topic}\x00{record['verdict_id']}"
    return f"{topic}\x00{record['source_topic']}:{record['source_partition']}:{record['source_offset']}"


class Seen:
    """The last ``capacity`` keys handled, oldest forgotten first."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, key: str) -> bool:
        """False when ``key`` was handled already."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", required=True, help="schema registry URL (Confluent-compatible API)")
    parser.add_argument(
        "--topic",
        action="append",
        help="moderation.verdicts (default), moderation.review, moderation.escalations, uploads.dlq;"
        " repeat for several",
    )
    parser.add_argument("--group", default="verdict-reader")
    parser.add_argument("--reader-schema", type=Path, help="pin this ModerationVerdict version (.avsc)")
    parser.add_argument("--max", type=int, default=0, help="stop after this many records (0: never)")
    parser.add_argument("--idle-timeout", type=float, default=0, help="stop after this long without one")
    args = parser.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    reader = args.reader_schema.read_text() if args.reader_schema else None
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.offset.store": False,
            "key.deserializer": StringDeserializer("utf_8"),
            "value.deserializer": AvroDeserializer(registry, reader),
        }
    )
    consumer.subscribe(args.topic or ["moderation.verdicts"])
    seen = Seen()
    count, last = 0, time.monotonic()
    try:
        while not args.max or count < args.max:
            if args.idle_timeout and time.monotonic() - last > args.idle_timeout:
                break
            try:
                msg = consumer.poll(1.0)
            except KafkaException as exc:  # e.g. a record no schema decodes: report it, go on
                print(f"skipped a record: {exc}", file=sys.stderr)
                continue
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            record: dict[str, Any] = msg.value()  # type: ignore[assignment]  # the deserializer's dict
            if seen.add(idempotency_key(msg.topic() or "", record)):  # else: a duplicate, handled
                handle(record)
                count += 1
            consumer.store_offsets(msg)
            last = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()  # commits the stored offsets
    return 0


if __name__ == "__main__":
    sys.exit(main())
