"""Read moderation verdicts from your own service, with confluent-kafka alone.

    pip install 'confluent-kafka[avro,schemaregistry]'
    python verdict_reader.py --bootstrap localhost:9092 --registry http://localhost:8081 \\
        --topic moderation.verdicts --group my-service

Each verdict is Avro in the Confluent wire format: the registry gives the writer's schema by the id
in the record. Pass ``--reader-schema ModerationVerdict.avsc`` to pin the version your code was
written against: newer verdicts (added optional fields) are then read as that version.
``read_committed`` hides verdicts of aborted transactions (the service's exactly-once mode).
An offset is stored only after its verdict was handled, so a crash re-reads, never skips.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import DeserializingConsumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer


def handle(verdict: dict[str, Any]) -> None:
    """Your code goes here: this one prints a line per verdict."""
    reasons = ", ".join(f"{r['check']}:{r['label']}" for r in verdict["reasons"]) or "-"
    print(
        f"{verdict['upload_id']}  {verdict['decision']:<8}  {reasons}  (policy {verdict['policy_version']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", required=True, help="schema registry URL (Confluent-compatible API)")
    parser.add_argument("--topic", default="moderation.verdicts")
    parser.add_argument("--group", default="verdict-reader")
    parser.add_argument("--reader-schema", type=Path, help="pin this ModerationVerdict version (.avsc)")
    parser.add_argument("--max", type=int, default=0, help="stop after this many verdicts (0: never)")
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
    consumer.subscribe([args.topic])
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
            handle(msg.value())  # type: ignore[arg-type]  # the deserializer made it a dict
            consumer.store_offsets(msg)
            count, last = count + 1, time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()  # commits the stored offsets
    return 0


if __name__ == "__main__":
    sys.exit(main())
