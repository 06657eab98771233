"""What a candidate policy would have decided for recorded verdicts (the library of ``python -m
consumer policy backtest``). ``Backtest`` is pure: each verdict is decided again from its evidence;
a verdict lacking a score the candidate needs is set aside and named, never guessed. The verdicts
come from the verdict topic (``read_verdict_topic``: the last N, a time range, or one partition's
offset range; never past the end the topic had when the pass started) or from a file of them
(``read_verdict_file``: an Avro container file, or JSON lines as ``ModerationVerdict.to_avro``
writes them). No provider is called: verdicts carry their evidence."""

from __future__ import annotations

import json
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.config import Settings
from consumer.core.records import Decision, ModerationVerdict, Reason
from consumer.errors import BrokerError, ConfigError, RegistryUnavailable, SerializationError, ToolError
from consumer.kafka.scan import Offsets, scan
from consumer.policy.decision import decide
from consumer.policy.evidence import missing_scores, results_of
from consumer.policy.tenants import PolicyChecks, PolicySet, load_policies
from consumer.schema_registry import codec_for
from consumer.serde import AvroCodec, decode_blocking

__all__ = [
    "MAX_LINE_BYTES",
    "Backtest",
    "Change",
    "VerdictRange",
    "backtest_candidate",
    "read_verdict_file",
    "read_verdict_topic",
]

ORDER = (Decision.ALLOW, Decision.REVIEW, Decision.BLOCK, Decision.ESCALATE)
MAX_LISTED = 100  # weakened and undecidable verdicts listed (all are counted)
_AVRO_MAGIC = b"Obj\x01"
MAX_LINE_BYTES = 1 << 20  # a verdict lists at most 100 of anything: far below this


@dataclass(frozen=True, slots=True)
class Change:
    """One verdict the candidate decides otherwise."""

    upload_id: str
    tenant_id: str
    verdict_id: str
    live: Decision
    candidate: Decision
    live_reasons: tuple[Reason, ...]
    candidate_reasons: tuple[Reason, ...]

    @property
    def weakens(self) -> bool:
        """A BLOCK or ESCALATE the candidate would let through more lightly."""
        return self.live.severity >= Decision.BLOCK.severity and self.candidate.severity < self.live.severity

    def describe(self) -> str:
        return (
            f"upload {self.upload_id} (tenant {self.tenant_id}): {self.live} -> {self.candidate};"
            f" live: {_reasons(self.live_reasons)}; candidate: {_reasons(self.candidate_reasons)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "verdict_id": self.verdict_id,
            "live": self.live.value,
            "candidate": self.candidate.value,
            "live_reasons": [_reason(r) for r in self.live_reasons],
            "candidate_reasons": [_reason(r) for r in self.candidate_reasons],
        }


@dataclass
class Backtest:
    """Feed it verdicts with ``add``; read the matrix, examples, weakened and undecidable ones."""

    candidate: PolicySet
    similarity_checks: frozenset[str]
    examples_per_cell: int = 3
    matrix: Counter[tuple[Decision, Decision]] = field(default_factory=Counter)
    examples: dict[tuple[Decision, Decision], list[Change]] = field(default_factory=dict)
    weakened: list[Change] = field(default_factory=list)
    weakened_count: int = 0
    undecidable: list[tuple[str, list[str]]] = field(default_factory=list)
    undecidable_count: int = 0

    def add(self, verdict: ModerationVerdict) -> Decision | None:
        """The candidate's decision for ``verdict`` (None when a needed score was not recorded)."""
        policy = self.candidate.for_tenant(verdict.tenant_id)
        missing = missing_scores(policy, verdict, self.similarity_checks)
        if missing:
            self.undecidable_count += 1
            if len(self.undecidable) < MAX_LISTED:
                self.undecidable.append((verdict.upload_id, missing))
            return None
        outcome = decide(policy, results_of(verdict, self.similarity_checks, policy.checks))
        cell = (verdict.decision, outcome.decision)
        self.matrix[cell] += 1
        if outcome.decision is verdict.decision:
            return outcome.decision
        change = Change(
            verdict.upload_id,
            verdict.tenant_id,
            verdict.verdict_id,
            verdict.decision,
            outcome.decision,
            verdict.reasons,
            outcome.reasons,
        )
        shown = self.examples.setdefault(cell, [])
        if len(shown) < self.examples_per_cell:
            shown.append(change)
        if change.weakens:
            self.weakened_count += 1
            if len(self.weakened) < MAX_LISTED:
                self.weakened.append(change)
        return outcome.decision

    @property
    def decided(self) -> int:
        return sum(self.matrix.values())

    @property
    def changed(self) -> int:
        return sum(n for (live, cand), n in self.matrix.items() if live is not cand)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": {"version": self.candidate.version, "digest": self.candidate.digest},
            "verdicts": self.decided + self.undecidable_count,
            "decided": self.decided,
            "changed": self.changed,
            "matrix": {
                live.value: {cand.value: self.matrix.get((live, cand), 0) for cand in ORDER} for live in ORDER
            },
            "examples": [
                {
                    "live": live.value,
                    "candidate": cand.value,
                    "count": self.matrix[(live, cand)],
                    "examples": [c.to_json() for c in changes],
                }
                for (live, cand), changes in sorted(self.examples.items(), key=_cell_order)
            ],
            "weakened": {"count": self.weakened_count, "listed": [c.to_json() for c in self.weakened]},
            "undecidable": {
                "count": self.undecidable_count,
                "listed": [{"upload_id": u, "missing": m} for u, m in self.undecidable],
            },
        }

    def table(self) -> str:
        width = max(len(d.value) for d in ORDER) + 2
        lines = [
            f"candidate policy {self.candidate.version} (digest {self.candidate.digest[:12]}):"
            f" {self.decided + self.undecidable_count} verdicts, {self.decided} decided again,"
            f" {self.changed} changed",
            "",
            "live \\ candidate".ljust(18) + "".join(d.value.rjust(width) for d in ORDER),
        ]
        for live in ORDER:
            counts = "".join(str(self.matrix.get((live, cand), 0)).rjust(width) for cand in ORDER)
            lines.append(live.value.ljust(18) + counts)
        lines.append("")
        lines.append(f"weakened BLOCK or ESCALATE: {self.weakened_count}")
        lines += [f"  {c.describe()}" for c in self.weakened]
        for (live, cand), changes in sorted(self.examples.items(), key=_cell_order):
            lines.append(f"{live} -> {cand}: {self.matrix[(live, cand)]}, for example")
            lines += [f"  {c.describe()}" for c in changes]
        if self.undecidable_count:
            lines.append(
                f"not decided: {self.undecidable_count} verdicts lack a score the candidate needs"
                " (left out of the matrix)"
            )
            lines += [f"  upload {u}: {'; '.join(m)}" for u, m in self.undecidable]
        return "\n".join(lines)


def _cell_order(item: tuple[tuple[Decision, Decision], object]) -> tuple[int, int]:
    (live, cand), _ = item
    return live.severity, cand.severity


def _reason(r: Reason) -> dict[str, Any]:
    return {"check": r.check, "label": r.label, "score": r.score, "threshold": r.threshold}


def _reasons(reasons: tuple[Reason, ...]) -> str:
    if not reasons:
        return "no rule fired"
    return ", ".join(
        f"{r.check}.{r.label}"
        + (f" {r.score:.3g}" if r.score is not None else "")
        + (f" >= {r.threshold:g}" if r.threshold is not None else "")
        for r in reasons[:3]
    ) + (" ..." if len(reasons) > 3 else "")


def backtest_candidate(
    verdicts: Iterable[ModerationVerdict],
    candidate: Path,
    checks: PolicyChecks,
    similarity_checks: frozenset[str],
    examples: int = 3,
) -> Backtest:
    """Decide ``verdicts`` again with the policies in ``candidate``, checked first against
    ``checks`` as the service would check them (ConfigError naming ``--candidate`` when invalid)."""
    result = Backtest(load_policies(candidate, checks, setting="--candidate"), similarity_checks, examples)
    for verdict in verdicts:
        result.add(verdict)
    return result


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

    def bounds(self, offsets: Offsets, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Each partition's (first, end) offsets for this range."""
        since: dict[int, int] = {}
        if self.since_ms is not None:
            since = offsets.at_time(partitions, self.since_ms)
        found = {}
        for partition in partitions:
            low, high = offsets.watermarks(partition)
            start, end = max(low, self.first or 0), high
            if self.final is not None:
                end = min(end, self.final + 1)
            if self.last is not None:  # the last N overall are among the last N of each partition
                start = max(low, high - self.last)
            if self.since_ms is not None:  # no record at or after the time: -1
                start = high if since.get(partition, -1) < 0 else max(low, since[partition])
            found[partition] = (start, end)
        return found


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
                    raise ToolError(f"backtest stopped: {exc}") from None
                except (SerializationError, KeyError, TypeError, ValueError):
                    continue  # not a verdict: nothing to decide
                if chosen.last is None:
                    yield verdict
                else:
                    found.append(verdict)
    except BrokerError as exc:
        raise ToolError(str(exc)) from None
    finally:
        codec.close()
    if chosen.last is not None:
        found.sort(key=lambda v: (v.processed_at, v.source_partition, v.source_offset))
        yield from found[-chosen.last :]
