"""The pipeline over in-memory providers that implement the provider protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from consumer.checks.media import Media
from consumer.checks.pipeline import Pipeline, Rejected, SourcePosition
from consumer.checks.providers import Checked, CsamAnswer
from consumer.core.records import CsamResult, Decision, MediaType, SimilarityMatch, UploadEvent
from consumer.errors import PermanentError, TransientError
from consumer.policy.decision import Frame
from consumer.policy.tenants import load_policies
from tests.factories import active_checks

SRC = SourcePosition("uploads", 0, 1)


@dataclass
class FakeClassifier:
    scores: dict[str, float] = field(default_factory=dict)
    error: Exception | None = None
    calls: int = 0
    gate: asyncio.Event | None = None

    async def classify(self, content: Media | str) -> Checked[Sequence[Frame]]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error:
            raise self.error
        return Checked([Frame(0.0, self.scores)], "fake")


@dataclass
class FakeMatcher:
    matched: bool = False
    calls: int = 0

    async def match(self, media: Media) -> Checked[CsamAnswer]:
        self.calls += 1
        result = CsamResult(self.matched, "pdq" if self.matched else None, 3 if self.matched else None)
        return Checked(CsamAnswer(result), "fake")


@dataclass
class FakeIndex:
    matches: list[SimilarityMatch] = field(default_factory=list)
    calls: int = 0

    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
        self.calls += 1
        return Checked(self.matches, "fake")

    async def add(self, media: Media, tenant: str, metadata: str) -> str:
        return "sha"

    async def remove(self, media: Media, tenant: str) -> str | None:
        return None


def image(upload_id: str = "u1", data: bytes = b"img") -> UploadEvent:
    return UploadEvent(upload_id, "t", "u", MediaType.IMAGE, 0, media_bytes=data)


def pipeline(
    csam: FakeMatcher | None = None,
    visual: FakeClassifier | None = None,
    text: FakeClassifier | None = None,
    index: FakeIndex | None = None,
    **kw: float,
) -> Pipeline:
    checks = active_checks(
        csam=csam or FakeMatcher(),
        visual=visual or FakeClassifier(),
        text=text or FakeClassifier(),
        index=index or FakeIndex(),
    )
    return Pipeline(checks, load_policies(), **kw)  # type: ignore[arg-type]


async def test_csam_match_short_circuits_everything_else() -> None:
    visual, index = FakeClassifier(), FakeIndex()
    v = await pipeline(FakeMatcher(matched=True), visual, index=index).moderate(image(), SRC)
    assert v.decision is Decision.ESCALATE
    assert (visual.calls, index.calls) == (0, 0)


async def test_transient_failure_fails_closed_with_reason() -> None:
    v = await pipeline(visual=FakeClassifier(error=TransientError("visual: Hive HTTP 503"))).moderate(
        image(), SRC
    )
    assert v.decision is Decision.REVIEW
    assert v.reasons[0].label == "check_unavailable:visual"
    assert [c.outcome for c in v.checks if c.check == "visual"] == ["unavailable"]


async def test_deadline_fails_closed() -> None:
    slow = FakeClassifier(gate=asyncio.Event())
    v = await pipeline(visual=slow, deadline_s=0.05).moderate(image(), SRC)
    assert v.reasons[0].label == "check_unavailable:visual" and "no answer within" in (
        v.reasons[0].detail or ""
    )


async def test_permanent_rejection_is_a_review_with_the_provider_reason() -> None:
    v = await pipeline(
        visual=FakeClassifier(error=PermanentError("visual: Hive HTTP 403: bad key"))
    ).moderate(image(), SRC)
    assert v.decision is Decision.REVIEW and v.reasons[0].label == "check_rejected:visual"


async def test_media_without_bytes_or_url_is_rejected_not_crashed() -> None:
    u = UploadEvent("u", "t", "u", MediaType.IMAGE, 0)
    v = await pipeline().moderate(u, SRC)
    assert isinstance(v, Rejected) and "neither media_bytes nor media_url" in str(v.error)


async def test_content_the_provider_refuses_is_a_dead_letter() -> None:
    refused = PermanentError("csam: Hive task error 3003: Image too small", check="csam", code="3003")
    v = await pipeline(visual=FakeClassifier(error=refused)).moderate(image(), SRC)
    assert isinstance(v, Rejected) and v.error is refused


async def test_refused_content_still_blocks_when_another_check_blocks_it() -> None:
    refused = PermanentError("similarity: Hive task error 3002: corrupt", check="similarity", code="3002")

    class RefusingIndex(FakeIndex):
        async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
            raise refused

    v = await pipeline(visual=FakeClassifier({"general_nsfw": 0.99}), index=RefusingIndex()).moderate(
        image(), SRC
    )
    assert not isinstance(v, Rejected) and v.decision is Decision.BLOCK


async def test_refused_content_gives_a_review_when_dead_letters_are_off() -> None:
    refused = PermanentError("visual: Hive task error 3002: corrupt", check="visual", code="3002")
    p = Pipeline(
        active_checks(
            csam=FakeMatcher(), visual=FakeClassifier(error=refused), text=FakeClassifier(), index=FakeIndex()
        ),
        load_policies(),
        dead_letter_refused=False,
    )
    v = await p.moderate(image(), SRC)
    assert not isinstance(v, Rejected) and v.reasons[0].label == "check_rejected:visual"


async def test_text_runs_only_the_text_classifier() -> None:
    csam, text = FakeMatcher(), FakeClassifier({"violence": 0.95})
    u = UploadEvent("u", "t", "u", MediaType.TEXT, 0, text="grr")
    v = await pipeline(csam, text=text).moderate(u, SRC)
    assert v.decision is Decision.BLOCK and csam.calls == 0 and text.calls == 1


async def test_concurrent_identical_content_asks_the_providers_once() -> None:
    gate = asyncio.Event()
    visual, index = FakeClassifier(gate=gate), FakeIndex()
    p = pipeline(visual=visual, index=index)
    first = asyncio.create_task(p.moderate(image("a"), SRC))
    second = asyncio.create_task(p.moderate(image("b"), SRC))
    gate.set()  # whether b shares a's answer in flight or finds it cached, the providers see a once
    va, vb = await asyncio.gather(first, second)
    assert visual.calls == 1
    assert sorted(c.check for c in va.checks + vb.checks) == [
        "cache",
        "csam",
        "similarity",
        "similarity",
        "visual",
    ]
    third = await p.moderate(image("c"), SRC)
    assert [(c.check, c.outcome) for c in third.checks] == [("cache", "cached"), ("similarity", "ok")]
    assert visual.calls == 1
    assert index.calls == 3  # the index changes over time: similarity is never cached


async def test_a_new_index_entry_blocks_content_that_was_allowed_before() -> None:
    index = FakeIndex()
    p = pipeline(index=index)
    assert (await p.moderate(image("a"), SRC)).decision is Decision.ALLOW
    index.matches = [SimilarityMatch("m", 0.97, "confirmed BLOCK")]
    assert (await p.moderate(image("b"), SRC)).decision is Decision.BLOCK


async def test_combined_csam_classifier_classes_reach_the_policy() -> None:
    @dataclass
    class Combined:
        async def match(self, media: Media) -> Checked[CsamAnswer]:
            return Checked(CsamAnswer(CsamResult(False), [Frame(0.0, {"csam": 0.95, "other": 0.05})]), "fake")

    v = await pipeline(Combined()).moderate(image(), SRC)  # type: ignore[arg-type]
    assert v.decision is Decision.ESCALATE
    assert (v.reasons[0].check, v.reasons[0].label) == ("csam", "csam")


async def test_failed_results_are_not_cached() -> None:
    visual = FakeClassifier(error=TransientError("down"))
    p = pipeline(visual=visual)
    await p.moderate(image("a"), SRC)
    await p.moderate(image("b"), SRC)
    assert visual.calls == 2


async def test_classification_and_similarity_run_concurrently() -> None:
    gate = asyncio.Event()

    @dataclass
    class OpeningIndex(FakeIndex):
        async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
            gate.set()  # the classifier waits for this: it only finishes if both run at once
            return Checked([], "fake")

    v = await pipeline(visual=FakeClassifier(gate=gate), index=OpeningIndex(), deadline_s=2).moderate(
        image(), SRC
    )
    assert [c.outcome for c in v.checks] == ["ok", "ok", "ok"]


async def test_a_failed_similarity_query_does_not_spoil_the_content_cache() -> None:
    @dataclass
    class DownIndex(FakeIndex):
        async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]:
            self.calls += 1
            raise TransientError("index down")

    visual, index = FakeClassifier(), DownIndex()
    p = pipeline(visual=visual, index=index)
    first = await p.moderate(image("a"), SRC)
    assert first.reasons[0].label == "check_unavailable:similarity"
    second = await p.moderate(image("b"), SRC)
    assert visual.calls == 1 and index.calls == 2
    assert [(c.check, c.outcome) for c in second.checks] == [
        ("cache", "cached"),
        ("similarity", "unavailable"),
    ]


async def test_a_declared_hash_never_keys_the_cache() -> None:
    """The CSAM bypass: a listed image declaring the hash of benign content seen before must be
    hash-matched itself, never answered from the benign content's cached results."""
    import hashlib

    class ListedOnly(FakeMatcher):
        async def match(self, media: Media) -> Checked[CsamAnswer]:
            self.calls += 1
            listed = media.data == b"listed image"
            return Checked(
                CsamAnswer(CsamResult(listed, "pdq" if listed else None, 0 if listed else None)), "fake"
            )

    csam = ListedOnly()
    p = pipeline(csam)
    benign = image("benign", b"benign image")
    assert (await p.moderate(benign, SRC)).decision is Decision.ALLOW
    liar = UploadEvent(
        "liar",
        "t",
        "u",
        MediaType.IMAGE,
        0,
        media_bytes=b"listed image",
        content_sha256=hashlib.sha256(b"benign image").hexdigest(),
    )
    outcome = await p.moderate(liar, SRC)
    assert isinstance(outcome, Rejected), "a declared hash that is not the bytes' hash is a dead letter"
    assert type(outcome.error).__name__ == "InvalidRecordError"
    assert hashlib.sha256(b"listed image").hexdigest() in str(outcome.error)
    honest = UploadEvent("honest", "t", "u", MediaType.IMAGE, 0, media_bytes=b"listed image")
    assert (await p.moderate(honest, SRC)).decision is Decision.ESCALATE
    assert csam.calls == 2  # the listed bytes were matched, not answered from the benign cache entry


async def test_an_unforeseen_error_in_a_check_fails_that_upload_closed() -> None:
    v = await pipeline(visual=FakeClassifier(error=ZeroDivisionError("bug"))).moderate(image(), SRC)
    assert not isinstance(v, Rejected)
    assert v.decision is Decision.REVIEW and v.reasons[0].label == "check_unavailable:visual"
    assert "internal error (ZeroDivisionError)" in (v.reasons[0].detail or "")
