"""The sequential baseline: a team's first consumer. Poll one record, call the checks one after
another with a synchronous client, produce the verdict, wait for it, commit, repeat."""

from __future__ import annotations

import sys
import time

import httpx
from confluent_kafka import Consumer, Producer

from consumer.core.records import Decision, ModerationVerdict, UploadEvent, verdict_id
from consumer.policy.tenants import load_policies
from consumer.serde import AvroCodec
from moderation_simulator.state import DEFAULT_KEYS


def main(bootstrap: str, topic: str, out_topic: str, sim_url: str, seconds: float) -> None:
    codec, policy = AvroCodec(), load_policies()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-baseline",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    consumer.subscribe([topic])
    http = httpx.Client(timeout=10)
    done = 0
    started: float | None = None
    while started is None or time.monotonic() - started < seconds:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        started = started or time.monotonic()
        upload = UploadEvent.from_avro(codec.decode(msg.value(), "UploadEvent"))
        files = {"media": ("u", upload.media_bytes or b"", "image/png")}
        for project, path in (
            ("csam", "/api/v1/task/sync"),
            ("visual", "/api/v1/task/sync"),
            ("index", "/api/v2/custom_index/query/sync"),
        ):
            http.post(
                sim_url + path, files=files, headers={"authorization": f"token {DEFAULT_KEYS[project]}"}
            )
        verdict = ModerationVerdict(
            verdict_id(upload.upload_id, policy.version),
            upload.upload_id,
            upload.tenant_id,
            Decision.ALLOW,
            (),
            policy.version,
            msg.topic(),
            msg.partition(),
            msg.offset(),
            int(time.time() * 1000),
        )
        producer.produce(out_topic, key=msg.key(), value=codec.encode("ModerationVerdict", verdict.to_avro()))
        producer.flush()
        consumer.commit(message=msg, asynchronous=False)
        done += 1
    elapsed = time.monotonic() - (started or time.monotonic())
    consumer.close()
    print(f"{done} {elapsed:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
