"""``python -m consumer policy check FILE`` and ``policy backtest --candidate FILE``.

``check`` validates a policy file offline exactly as the service does at start and on reload.
``backtest`` reads recorded verdicts, from the verdict topic (the last N, a time range, or one
partition's offset range; never past the end the topic had when it started) or from a file of them
(an Avro container file, or JSON lines as ``ModerationVerdict.to_avro`` writes them), and decides
each again with the candidate. It calls no provider: verdicts carry their evidence.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from consumer.checks.registry import CheckRegistry, Feeds
from consumer.config import Settings
from consumer.core.records import ModerationVerdict
from consumer.errors import ConfigError, RegistryUnavailable, SerializationError
from consumer.kafka.scan import scan, watermarks
from consumer.policy.backtest import Backtest
from consumer.policy.tenants import load_policies
from consumer.schema_registry import codec_for
from consumer.serde import AvroCodec, decode_blocking

__all__ = [
    "VerdictRange",
    "backtest",
    "check_policy_file",
    "parse_time",
    "read_verdict_file",
    "read_verdict_topic",
]

_AVRO_MAGIC = b"Obj\x01"
MAX_LINE_BYTES = 1 << 20  # a verdict lists at most 100 of anything: far below this


def check_policy_file(path: Path, registry: CheckRegistry, echo: Callable[[str], None] = print) -> int:
    """0 and a summary when valid; ConfigError (naming the setting) when not."""
    policies = load_policies(path, registry, setting="policy file")
    tenants = sorted(policies.tenants)
    shown = ", ".join(tenants[:10]) + (" ..." if len(tenants) > 10 else "")
    echo(
        f"{path}: valid policy {policies.version} (digest {policies.digest[:12]}),"
        f" {len(tenants)} tenant override{'s' if len(tenants) != 1 else ''}{': ' + shown if tenants else ''}"
    )
    return 0


@dataclass(frozen=True, slots=True)
class VerdictRange:
    """Which verdicts of the topic: the last ``last`` (over all partitions), those written from
    ``since`` until ``until`` (epoch ms), or ``partition``'s offsets ``first``..``final``."""

    last: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None
    first: int | None = None
    final: int | None = None

    def __post_init__(self) -> None:
        if self.last is not None and self.last < 1:
            raise ConfigError("--last", "must be at least 1")
        if (self.first is not None or self.final is not None) and self.partition is None:
            raise ConfigError("--from-offset/--to-offset", "need --partition")
        if self.first is not None and self.final is not None and self.first > self.final:
            raise ConfigError("--from-offset/--to-offset", f"empty range {self.first}..{self.final}")
        if self.since_ms is not None and self.until_ms is not None and self.since_ms > self.until_ms:
            raise ConfigError("--since/--until", "--since is after --until")

    def bounds(self, consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Each partition's (first, end) offsets for this range."""
        since: dict[int, int] = {}
        if self.since_ms is not None:
            wanted = [TopicPartition(topic, p, self.since_ms) for p in partitions]
            since = {tp.partition: tp.offset for tp in consumer.offsets_for_times(wanted, timeout=30)}
        found = {}
        for partition in partitions:
            low, high = watermarks(consumer, topic, partition)
            start, end = max(low, self.first or 0), high
            if self.final is not None:
                end = min(end, self.final + 1)
            if self.last is not None:  # the last N overall are among the last N of each partition
                start = max(low, high - self.last)
            if self.since_ms is not None:  # no record at or after the time: -1
                start = high if since.get(partition, -1) < 0 else max(low, since[partition])
            found[partition] = (start, end)
        return found


def parse_time(value: str, option: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(option, "expected an ISO 8601 time such as 2026-12-04T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def read_verdict_file(path: Path) -> Iterator[ModerationVerdict]:
    """Verdicts from an Avro container file or JSON lines, each checked against the verdict schema
    (a file is input like any other: a wrong type or a giant line is refused, naming the record)."""
    import fastavro
    from fastavro.validation import validate

    codec = AvroCodec()
    schema = codec.schema("ModerationVerdict").parsed
    ours = {entry.canonical for entry in codec.versions("ModerationVerdict")}

    def verdict(record: object, where: str) -> ModerationVerdict:
        if not validate(record, schema, raise_errors=False):
            raise ConfigError("--input", f"{path} {where} is not a verdict")
        return ModerationVerdict.from_avro(record)  # type: ignore[arg-type]

    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError("--input", f"{path} is not a regular file")
        with path.open("rb") as f:
            magic = f.read(4)
            f.seek(0)
            if magic == _AVRO_MAGIC:
                container = fastavro.reader(f)
                # the container names its own writer schema: only a version of ours is read (a
                # look-alike with an array of nulls declaring 2^40 items held fastavro's reader forever)
                if _canonical(container.metadata.get("avro.schema")) not in ours:
                    raise ConfigError("--input", f"{path} is an Avro file of another schema (not a verdict)")
                for number, record in enumerate(container, 1):
                    yield verdict(record, f"record {number}")
                return
            for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
                if len(line) > MAX_LINE_BYTES:
                    raise ConfigError(
                        "--input", f"{path} line {number} is longer than {MAX_LINE_BYTES} bytes"
                    )
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        raise ConfigError("--input", f"{path} line {number} is not JSON") from None
                    yield verdict(record, f"line {number}")
    except OSError as exc:
        raise ConfigError("--input", f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except (ValueError, KeyError, TypeError, EOFError, RecursionError) as exc:
        raise ConfigError("--input", f"{path} is not a file of verdicts ({type(exc).__name__})") from None


def _canonical(schema_json: object) -> str | None:
    """The parsing canonical form of a container's writer schema (None when it is not one)."""
    from fastavro.schema import to_parsing_canonical_form

    if not isinstance(schema_json, str) or len(schema_json) > MAX_LINE_BYTES:
        return None
    try:
        return str(to_parsing_canonical_form(json.loads(schema_json)))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def read_verdict_topic(
    settings: Settings, chosen: VerdictRange, topic: str | None = None
) -> Iterator[ModerationVerdict]:
    """Verdicts of the verdict topic (either framing) in the chosen range; a record that is not a
    verdict is passed over."""
    k = settings.kafka
    topic = topic or k.verdict_topic
    codec = codec_for(settings)
    found: list[ModerationVerdict] = []
    try:
        with scan(k, topic, "backtest", chosen.bounds, chosen.partition) as records:
            for msg in records:
                if chosen.until_ms is not None and msg.timestamp()[1] > chosen.until_ms:
                    continue
                try:
                    verdict = ModerationVerdict.from_avro(
                        decode_blocking(codec, msg.value(), "ModerationVerdict", topic)
                    )
                except RegistryUnavailable as exc:
                    raise RuntimeError(f"backtest stopped: {exc}") from None
                except (SerializationError, KeyError, TypeError, ValueError):
                    continue  # not a verdict: nothing to decide
                if chosen.last is None:
                    yield verdict
                else:
                    found.append(verdict)
    except KafkaException as exc:
        raise RuntimeError(f"cannot read {topic}: {exc.args[0].str()}") from None
    finally:
        codec.close()
    if chosen.last is not None:
        found.sort(key=lambda v: (v.processed_at, v.source_partition, v.source_offset))
        yield from found[-chosen.last :]


def backtest(
    verdicts: Iterator[ModerationVerdict],
    candidate: Path,
    registry: CheckRegistry,
    *,
    as_json: bool = False,
    examples: int = 3,
    echo: Callable[[str], None] = print,
) -> Backtest:
    """Decide ``verdicts`` again with the policies in ``candidate`` (checked first, as the service
    would check them) and print the result."""
    policies = load_policies(candidate, registry, setting="--candidate")
    result = Backtest(policies, registry.fed(Feeds.SIMILARITY), examples)
    for verdict in verdicts:
        result.add(verdict)
    document: Any = result.to_json() if as_json else None
    echo(json.dumps(document, indent=2) if as_json else result.table())
    return result
