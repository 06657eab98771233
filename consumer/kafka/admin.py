"""Topic creation for development and first start (idempotent)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from ..config import KafkaSettings
from .common import base_config

__all__ = ["ensure_topics"]


def ensure_topics(
    settings: KafkaSettings, topics: list[str], partitions: int | None = None, timeout: float = 30.0
) -> None:
    admin = AdminClient(base_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t, num_partitions=partitions or settings.topic_partitions, replication_factor=-1)
        for t in topics
        if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {topic}: {exc.args[0].str()}") from None
