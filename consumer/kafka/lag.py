"""Consumer lag: each assigned partition's log end minus the group's position on it, in records; in
time, the age of the oldest record the process holds unfinished; and the records appended to the
input topic between two readings of the log ends.

The log ends come from one ListOffsets request per broker through an admin client, which runs on
its own librdkafka threads: neither the Kafka thread nor the event loop waits on the broker. The
consumer's own statistics (``statistics.interval.ms``) are no substitute: a paused partition is not
fetched, so its high watermark there stops moving exactly when the lag matters (an outage holds
intake and pauses every partition)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, IsolationLevel, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from consumer.core.offsets import TopicPartition
from consumer.kafka.common import base_config
from consumer.settings_sections import KafkaSettings

__all__ = ["Appended", "LogOffsets", "ages", "lag", "oldest_timestamps"]


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


def oldest_timestamps(held: Iterable[tuple[TopicPartition, Message]]) -> dict[TopicPartition, int]:
    """Per partition, the smallest Kafka timestamp (ms) of the ``held`` records (a record without
    one does not count). One pass, for the watch's round: never on a record's path."""
    oldest: dict[TopicPartition, int] = {}
    for tp, message in held:
        kind, ms = message.timestamp()
        if kind == TIMESTAMP_NOT_AVAILABLE or ms < 0:
            continue
        found = oldest.get(tp)
        if found is None or ms < found:
            oldest[tp] = ms
    return oldest


def ages(
    partitions: Iterable[TopicPartition], oldest_ms: Mapping[TopicPartition, int], now_ms: int
) -> dict[TopicPartition, float]:
    """Lag in time: per partition, seconds since its oldest held record was written (``oldest_ms``),
    0 for a partition of which nothing is held (caught up, or its next records not fetched yet) and
    for a timestamp in the future (a producer's clock ahead of ours)."""
    return {tp: max(0, now_ms - oldest_ms[tp]) / 1000 if tp in oldest_ms else 0.0 for tp in partitions}


class Appended:
    """Records appended to partitions between two readings of their log ends: a partition counts
    from the second reading after it was assigned (the first one is its baseline)."""

    def __init__(self) -> None:
        self._last: dict[TopicPartition, int] = {}

    def update(self, ends: Mapping[TopicPartition, int], assigned: Iterable[TopicPartition]) -> int:
        """How far ``ends`` moved since the last reading; partitions not in ``assigned`` are forgotten
        (an end that went back, a truncated log, counts nothing and becomes the baseline; an unknown
        one, negative, is no answer)."""
        known = {tp: end for tp, end in ends.items() if end >= 0}
        grown = 0
        for tp, end in known.items():
            last = self._last.get(tp)
            if last is not None and end > last:
                grown += end - last
        keep = set(assigned)
        self._last = {tp: end for tp, end in {**self._last, **known}.items() if tp in keep}
        return grown


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
