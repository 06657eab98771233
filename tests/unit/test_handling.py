"""``consumer.handling.RecordHandler``: one received record to its outputs. Poison (bytes no schema
reads, an invalid upload, a record over the size or header caps) becomes a dead letter and never
reaches the pipeline; a valid upload is decided at once when no check applies, else moderated in
the task it hands to ``spawn``; review decisions and deletions go to index maintenance."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from consumer.checks.maintenance import IndexMaintenance
from consumer.checks.pipeline import Pipeline
from consumer.checks.providers import Checked
from consumer.config import load_settings
from consumer.core.deadletter import DeadLetter
from consumer.core.headers import CUT_COUNT, measure
from consumer.core.records import Decision, MediaType, ModerationVerdict, ReviewDecision, UploadEvent
from consumer.core.scheduler import Work
from consumer.delivery.outputs import Received
from consumer.handling import RecordHandler
from consumer.policy.decision import Frame
from consumer.policy.tenants import load_policies
from consumer.serde import AvroCodec
from tests.factories import RecordingSink, active_checks, recording_outputs

CODEC = AvroCodec()
SETTINGS = load_settings(
    processing={"max_record_bytes": 65_536, "max_header_count": 4, "max_header_bytes": 1_000}
)
K = SETTINGS.kafka


@dataclass
class Text:
    """A text classifier that counts its calls and finds spam in ``spam``."""

    calls: list[str] = field(default_factory=list)

    async def classify(self, text: str) -> Checked[Sequence[Frame]]:
        self.calls.append(text)
        return Checked([Frame(0.0, {"yes_spam": 0.99 if "spam" in text else 0.01})], "fake")


@dataclass
class Index:
    """A similarity index the maintenance updates: what it was asked to add and remove."""

    added: list[str] = field(default_factory=list)

    async def query(self, media: Any, tenant: str) -> Checked[Sequence[Any]]:
        return Checked([], "fake")

    async def add(self, media: Any, tenant: str, metadata: str) -> str:
        self.added.append(tenant)
        return "sha"

    async def remove(self, media: Any, tenant: str) -> str | None:
        return None


@dataclass
class Handled:
    handler: RecordHandler
    sink: RecordingSink
    text: Text
    spawned: list[tuple[Work[Received], Coroutine[Any, Any, None]]] = field(default_factory=list)
    finished: list[Work[Received]] = field(default_factory=list)

    async def run_spawned(self) -> None:
        for _, coroutine in self.spawned:
            await coroutine

    def letters(self) -> list[tuple[DeadLetter, dict[str, bytes]]]:
        found = []
        for _, _, value, headers in self.sink.to(K.dlq_topic):
            found.append((DeadLetter.from_avro(CODEC.decode(value, "DeadLetter")), dict(headers or [])))
        return found

    def verdicts(self) -> list[ModerationVerdict]:
        return [
            ModerationVerdict.from_avro(CODEC.decode(value, "ModerationVerdict"))
            for _, _, value, _ in self.sink.to(K.verdict_topic)
        ]


def handled(*, checks: bool = True, index: Index | None = None) -> Handled:
    text = Text()
    pipeline = Pipeline(active_checks(text=text) if checks else [], load_policies())
    sink = RecordingSink()
    outputs = recording_outputs(sink, K, max_header_count=4, max_header_bytes=1_000)
    result: Handled
    handler = RecordHandler(
        SETTINGS.processing,
        CODEC,
        pipeline,
        IndexMaintenance(index),
        outputs,
        {K.input_topic: "UploadEvent", K.review_decision_topic: "ReviewDecision"},
        finished=lambda work: result.finished.append(work),
        spawn=lambda work, coroutine: result.spawned.append((work, coroutine)),
    )
    result = Handled(handler, sink, text)
    return result


def work(
    value: bytes | None,
    key: bytes | None = b"u-1",
    topic: str = K.input_topic,
    headers: list[tuple[str, bytes | None]] | None = None,
    offset: int = 7,
) -> Work[Received]:
    msg = Message(topic=topic, partition=0, offset=offset, key=key, value=value, headers=headers)
    count, size = measure(headers)
    return Work(
        (topic, 0), offset, key, len(value or b"") + len(key or b"") + size, Received(msg, 1, count, size)
    )


def text_upload(text: str = "hello there", upload_id: str = "u-1", tenant: str = "acme") -> bytes:
    event = UploadEvent(upload_id, tenant, "user", MediaType.TEXT, 1_700_000_000_000, text=text)
    return CODEC.encode("UploadEvent", event.to_avro())


async def test_a_valid_upload_reaches_the_pipeline_in_a_task_and_gets_its_verdict() -> None:
    h = handled()
    record = work(text_upload("buy spam now"))
    h.handler.start(record)
    assert not h.sink.produced and len(h.spawned) == 1  # nothing decided inline: a check applies
    assert h.spawned[0][0] is record
    await h.run_spawned()
    assert h.text.calls == ["buy spam now"]
    (verdict,) = h.verdicts()
    assert verdict.upload_id == "u-1" and verdict.decision is Decision.REVIEW
    assert (verdict.source_topic, verdict.source_partition, verdict.source_offset) == (K.input_topic, 0, 7)
    assert not h.letters()


async def test_an_upload_no_check_applies_to_is_decided_at_once() -> None:
    h = handled(checks=False)
    h.handler.start(work(text_upload()))
    assert not h.spawned
    (verdict,) = h.verdicts()
    assert verdict.upload_id == "u-1"


def test_bytes_no_schema_reads_are_a_dead_letter_and_never_reach_the_pipeline() -> None:
    for poison in (
        b"",
        b"\x00not avro at all",
        text_upload()[:-3],
        CODEC.encode("ModerationVerdict", _verdict()),
    ):
        h = handled()
        h.handler.start(work(poison, key=b"poison"))
        assert not h.spawned and not h.text.calls and not h.verdicts()
        ((letter, headers),) = h.letters()
        assert letter.failure.error_class == "SerializationError", poison
        assert letter.original_value == poison and letter.original_key == b"poison"
        assert (letter.source_topic, letter.source_offset) == (K.input_topic, 7)
        assert headers["dlq.error.class"] == b"SerializationError"


def test_an_upload_that_breaks_the_contract_is_a_dead_letter_naming_it() -> None:
    for value, key in (
        (text_upload(tenant="bad tenant!"), b"u-1"),  # malformed tenant id
        (text_upload(text=""), b"u-1"),  # a TEXT upload without text
        (text_upload(), None),  # no key
    ):
        h = handled()
        h.handler.start(work(value, key=key))
        assert not h.spawned and not h.text.calls
        ((letter, _),) = h.letters()
        assert letter.failure.error_class == "InvalidRecordError"
        assert letter.upload_id == "u-1"


async def test_records_over_the_header_caps_are_dead_letters_without_their_headers() -> None:
    over_count = [(f"h{i}", b"") for i in range(5)]
    over_bytes = [("traceparent", b"x" * 1_001)]
    for headers in (over_count, over_bytes):
        h = handled()
        h.handler.start(work(text_upload(), headers=headers))
        assert not h.spawned and not h.text.calls
        ((letter, found),) = h.letters()
        assert letter.failure.error_class == "InvalidRecordError" and "headers" in letter.failure.message
        assert found[CUT_COUNT] == str(len(headers)).encode()
        assert not {name for name, _ in headers} & set(found)
    at_caps = handled()
    at_caps.handler.start(work(text_upload(), headers=[(f"h{i}", b"") for i in range(4)]))
    assert len(at_caps.spawned) == 1 and not at_caps.letters()
    await at_caps.run_spawned()
    assert len(at_caps.verdicts()) == 1


def test_a_record_over_the_size_cap_is_a_dead_letter() -> None:
    h = handled()
    h.handler.start(work(text_upload("x" * 70_000)))
    assert not h.spawned
    ((letter, _),) = h.letters()
    assert letter.failure.error_class == "InvalidRecordError"


async def test_a_review_decision_goes_to_index_maintenance_and_finishes_the_record() -> None:
    index = Index()
    h = handled(index=index)
    review = ReviewDecision("r-1", "u-9", "acme", Decision.BLOCK, 1, media_bytes=b"image bytes")
    record = work(CODEC.encode("ReviewDecision", review.to_avro()), key=b"u-9", topic=K.review_decision_topic)
    h.handler.start(record)
    assert len(h.spawned) == 1
    await h.run_spawned()
    assert index.added == ["acme"] and h.finished == [record]
    assert not h.sink.produced


def _verdict() -> dict[str, Any]:
    return ModerationVerdict("v", "u-1", "acme", Decision.ALLOW, (), "p", K.input_topic, 0, 1, 1).to_avro()
