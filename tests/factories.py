"""Factories shared by the test packages: the shipped check declarations over in-memory clients,
outputs into a recording sink, hand-made Avro longs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consumer.checks.builtin import CSAM, SIMILARITY, TEXT, VISUAL
from consumer.checks.pipeline import ActiveCheck
from consumer.checks.registry import CheckClient, Subject
from consumer.delivery.outputs import Outputs


def _media(subject: Subject) -> Any:
    assert subject.media is not None
    return subject.media


def active_checks(
    *,
    csam: Any = None,
    visual: Any = None,
    text: Any = None,
    index: Any = None,
    provider: str = "fake",
) -> list[ActiveCheck]:
    """The shipped checks, each answered by the given fake (``match``, ``classify``, ``query``)."""
    checks: list[ActiveCheck] = []
    if csam is not None:
        checks.append(ActiveCheck(CSAM, CheckClient(provider, lambda s: csam.match(_media(s)))))
    if visual is not None:
        checks.append(ActiveCheck(VISUAL, CheckClient(provider, lambda s: visual.classify(_media(s)))))
    if text is not None:
        checks.append(ActiveCheck(TEXT, CheckClient(provider, lambda s: text.classify(s.upload.text))))
    if index is not None:
        query = CheckClient(provider, lambda s: index.query(_media(s), s.upload.tenant_id), index=index)
        checks.append(ActiveCheck(SIMILARITY, query))
    return checks


def avro_long(n: int) -> bytes:
    """``n`` as Avro writes a long (zigzag, then a little-endian base-128 varint): for hand-made
    hostile bodies that declare lengths and counts they do not hold."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass
class RecordingSink:
    """A ``Sink`` that keeps what it is given: (topic, key, value, headers)."""

    produced: list[tuple[str, Any, bytes, Any]] = field(default_factory=list)

    def produce(
        self, topic: str, key: Any, value: bytes, headers: Any = None, on_delivery: Any = None
    ) -> None:
        self.produced.append((topic, key, value, headers))

    def to(self, topic: str) -> list[tuple[str, Any, bytes, Any]]:
        return [p for p in self.produced if p[0] == topic]


def recording_outputs(sink: RecordingSink, kafka: Any = None, **options: Any) -> Outputs:
    """Outputs (at least once) into ``sink``; ``options``: ``Outputs`` keywords (header caps...)."""
    from consumer.config import load_settings
    from consumer.serde import AvroCodec

    return Outputs(
        kafka or load_settings().kafka,
        AvroCodec(),
        sink,  # type: ignore[arg-type]
        exactly_once=False,
        release=lambda work: None,
        complete=lambda work: None,
        current=lambda work: True,
        fail=lambda exc: None,
        **options,
    )
