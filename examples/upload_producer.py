"""Write uploads for the moderation service from your own upload service, with confluent-kafka alone.

    pip install 'confluent-kafka[avro,schemaregistry]'
    python upload_producer.py --bootstrap localhost:9092 --registry http://localhost:8081 \\
        --schema UploadEvent.avsc --tenant acme \\
        'text:Lovely sunset at the beach' file:cat.jpg url:https://cdn.example.com/cat.png

The contract (docs/producing.md): each record is an ``UploadEvent`` in the Confluent wire format
(magic byte 0, the 4-byte schema id, the Avro body), keyed by its ``upload_id`` as UTF-8, so one
upload's records keep their order and its verdict carries the same key. The producer registers
nothing: the schema is registered once per release (``moderation-consumer schemas register``) and
``AvroSerializer`` only looks up the id the registry gave it (``auto.register.schemas: False``).
Small media goes inline (``media_bytes``, at most the service's inline limit, 1 MB by default),
anything larger by URL (``media_url``, fetched by the provider or by the service). One line per
upload the broker acknowledged: ``<upload_id> <media_type> <text|inline|url>``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import SerializationError, StringSerializer

INLINE_LIMIT = 1_000_000  # the service's default processing.inline_media_limit_bytes
SHIPPED_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "UploadEvent.avsc"
IMAGE_TYPES = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF8": "image/gif",
    b"RIFF": "image/webp",
}


def upload_of(spec: str, tenant: str, user: str) -> tuple[dict[str, Any], str]:
    """An UploadEvent (as Avro data) from ``text:<text>``, ``file:<image path>`` or ``url:<URL>``."""
    kind, _, arg = spec.partition(":")
    record: dict[str, Any] = {
        "upload_id": f"up-{uuid.uuid4().hex[:16]}",  # unique; also the record key
        "tenant_id": tenant,
        "user_id": user,
        "created_at": datetime.now(UTC),  # timestamp-millis: when your platform accepted it
        "metadata": {"producer": "python-example"},
    }
    if kind == "text":
        return {**record, "media_type": "TEXT", "text": arg}, "text"
    if kind == "file":
        data = Path(arg).read_bytes()
        if len(data) > INLINE_LIMIT:
            raise SystemExit(f"{arg}: {len(data)} bytes is over the inline limit: send a url: instead")
        content_type = next((t for magic, t in IMAGE_TYPES.items() if data.startswith(magic)), None)
        if content_type is None:
            raise SystemExit(f"{arg}: not a PNG, JPEG, GIF or WebP image")
        return {
            **record,
            "media_type": "GIF" if content_type == "image/gif" else "IMAGE",
            "media_bytes": data,
            "content_sha256": hashlib.sha256(data).hexdigest(),  # checked against the bytes
            "content_type": content_type,
            "size_bytes": len(data),
        }, "inline"
    if kind == "url":
        content_type = "image/png" if arg.lower().endswith(".png") else "image/jpeg"
        return {**record, "media_type": "IMAGE", "media_url": arg, "content_type": content_type}, "url"
    raise SystemExit(f"{spec!r}: expected text:, file: or url:")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", required=True, help="schema registry URL (Confluent-compatible API)")
    parser.add_argument("--topic", default="uploads", help="the service's input topic")
    parser.add_argument("--schema", type=Path, default=SHIPPED_SCHEMA, help="the UploadEvent .avsc")
    parser.add_argument("--tenant", default="demo", help="tenant id: 1-128 of A-Z a-z 0-9 . _ -")
    parser.add_argument("--user", default="user-1", help="the uploading user's id")
    parser.add_argument("uploads", nargs="+", help="text:<text> | file:<image path> | url:<image URL>")
    args = parser.parse_args()

    uploads = [upload_of(spec, args.tenant, args.user) for spec in args.uploads]
    registry = SchemaRegistryClient({"url": args.registry})
    producer = SerializingProducer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,  # acks=all, no duplicates or reordering from retries
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(
                registry,
                args.schema.read_text(),
                # look the schema up, never register it; normalize: the registry compares parsed
                # schemas, not texts (Apicurio matches the text exactly otherwise)
                conf={"auto.register.schemas": False, "use.latest.version": False, "normalize.schemas": True},
            ),
        }
    )
    failures: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(f"{msg.key()!r}: {err.str()}")

    for record, _how in uploads:
        try:
            producer.produce(args.topic, key=record["upload_id"], value=record, on_delivery=delivered)
        except SerializationError as exc:  # e.g. the registry lacks the schema: nothing is sent
            print(
                f"cannot encode {record['upload_id']} ({exc}); is the schema registered under"
                f" {args.topic}-value? (`moderation-consumer schemas register`)",
                file=sys.stderr,
            )
            return 1
        producer.poll(0)
    if producer.flush(60) or failures:
        print(f"not acknowledged: {failures or 'timed out'}", file=sys.stderr)
        return 1
    for record, how in uploads:
        print(record["upload_id"], record["media_type"], how)
    return 0


if __name__ == "__main__":
    sys.exit(main())
