"""Consumer lag: each assigned partition's log end minus the group's position on it.

The log ends come from one ListOffsets request per broker through an admin client, which runs on
its own librdkafka threads: neither the Kafka thread nor the event loop waits on the broker. The
consumer's own statistics (``statistics.interval.ms``) are no substitute: a paused partition is not
fetched, so its high watermark there stops moving exactly when the lag matters (an outage holds
intake and pauses every partition)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from confluent_kafka import IsolationLevel, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from consumer.core.offsets import TopicPartition
from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["LogOffsets", "lag"]


def lag(
    ends: Mapping[TopicPartition, int],
    positions: Mapping[TopicPartition, int | None],
    starts: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """Records between each partition's position and its end: ``positions`` (the group's committed
    offset), else ``starts`` (the log start, where a group with nothing committed begins); a
    partition neither knows is left out."""
    found = {}
    for tp, end in ends.items():
        position = positions.get(tp)
        if position is None and starts is not None:
            position = starts.get(tp)
        if position is not None and end >= 0:
            found[tp] = max(0, end - position)
    return found


class LogOffsets:
    """The log start or end (the last stable offset: what a ``read_committed`` consumer can read)
    of partitions, asked of the brokers. The admin client is made on first use."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 5.0) -> None:
        self._settings = settings
        self._timeout = timeout_s
        self._admin: AdminClient | None = None

    async def query(self, parts: Iterable[TopicPartition], *, end: bool = True) -> dict[TopicPartition, int]:
        """Offsets of ``parts``; a partition the brokers did not answer for is left out. Raises
        ``KafkaException`` when the request as a whole fails."""
        wanted = list(parts)
        if not wanted:
            return {}
        if self._admin is None:
            self._admin = await asyncio.to_thread(AdminClient, base_config(self._settings))
        spec = OffsetSpec.latest() if end else OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets(
            {KafkaPartition(t, p): spec for t, p in wanted},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=self._timeout,
        )
        found: dict[TopicPartition, int] = {}
        failed: KafkaException | None = None
        for tp, future in futures.items():
            try:
                info = await asyncio.wrap_future(future)
            except KafkaException as exc:
                failed = exc
                continue
            found[(tp.topic, tp.partition)] = int(info.offset)
        if failed is not None and not found:
            raise failed
        return found
