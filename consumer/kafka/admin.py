"""Topic creation for development and first start (idempotent)."""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from consumer.errors import BrokerError
from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["PRODUCER_MESSAGE_MAX_BYTES", "ensure_topics", "output_limit"]

log = logging.getLogger("consumer.kafka.admin")
PRODUCER_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes


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
                raise BrokerError(f"cannot create topic {topic}: {exc.args[0].str()}") from None


def output_limit(settings: KafkaSettings, topics: list[str], timeout: float = 10.0) -> int:
    """The largest record both the producer (``message.max.bytes``) and each of ``topics``
    (``max.message.bytes``, when it can be read) accept: outputs are kept below it."""
    try:
        limit = int(settings.client_config.get("message.max.bytes", PRODUCER_MESSAGE_MAX_BYTES))
    except ValueError:
        limit = PRODUCER_MESSAGE_MAX_BYTES
    admin = AdminClient(base_config(settings))
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    try:
        for future in admin.describe_configs(resources, request_timeout=timeout).values():
            entry = future.result(timeout).get("max.message.bytes")
            if entry is not None and entry.value:
                limit = min(limit, int(entry.value))
    except (KafkaException, ValueError, FutureTimeout) as exc:
        log.warning("cannot read the topics' max.message.bytes; using %d: %s", limit, exc)
    return limit
