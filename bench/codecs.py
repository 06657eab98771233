"""CPU per record of the two framings once the registry's answers are cached: a verdict encoded
and an upload decoded, single-object encoding (``serde.AvroCodec``) against the Confluent wire
format through ``confluent_kafka.schema_registry`` (``RegistryCodec``). In-process, no Kafka."""

from __future__ import annotations

import time
from typing import Any

from consumer.config import load_settings
from consumer.core.records import CheckRun, Decision, MediaType, ModerationVerdict, Reason
from consumer.schema_registry import codec_for, output_schemas
from consumer.serde import AvroCodec, Codec
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import upload

__all__ = ["measure"]

RECORDS = 20_000


def verdict_record() -> dict[str, Any]:
    """A typical verdict: one reason, three checks."""
    checks = tuple(
        CheckRun(c, "hive", 52.0, "ok", model="m", model_version="1")
        for c in ("csam", "visual", "similarity")
    )
    return ModerationVerdict(
        verdict_id="0b4f2a5e-0000-5000-8000-000000000000",
        upload_id="up-0123456789ab",
        tenant_id="tenant-1",
        decision=Decision.REVIEW,
        reasons=(Reason("visual", "general_nsfw", 0.81, 0.8),),
        policy_version="default-2026.11",
        source_topic="uploads",
        source_partition=3,
        source_offset=123456,
        processed_at=1_764_000_000_000,
        checks=checks,
        policy_digest="a" * 64,
    ).to_avro()


def _us_per_call(call: Any, n: int = RECORDS) -> float:
    start = time.process_time()
    for _ in range(n):
        call()
    return round((time.process_time() - start) * 1e6 / n, 2)


def measure(registry_url: str) -> dict[str, Any]:
    settings = load_settings(schema_registry={"url": registry_url, "auto_register": True})
    confluent = codec_for(settings)
    local = AvroCodec()
    try:
        confluent.prepare(output_schemas(settings.kafka))
        event = upload(MediaType.IMAGE, data=image_bytes(make_image(1, (64, 64))), content_type="image/png")
        topic, out = settings.kafka.input_topic, settings.kafka.verdict_topic
        verdict = verdict_record()
        result: dict[str, Any] = {}
        codecs: dict[str, Codec] = {"single_object": local, "confluent": confluent}
        for name, codec in codecs.items():
            framed = codec.encode("UploadEvent", event.to_avro(), topic=topic)
            if codec.needs_registry(framed):
                codec.resolve(framed, "UploadEvent", topic=topic)  # the schema id is cached from here on
            result[name] = {
                "encode_verdict_us": _us_per_call(
                    lambda c=codec: c.encode("ModerationVerdict", verdict, topic=out)
                ),
                "decode_upload_us": _us_per_call(
                    lambda c=codec, f=framed: c.decode(f, "UploadEvent", topic=topic)
                ),
            }
        return result
    finally:
        confluent.close()
