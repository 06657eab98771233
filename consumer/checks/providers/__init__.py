"""Provider clients behind one-method protocols, so the pipeline never knows which vendor answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from consumer.core.records import CsamResult, SimilarityMatch
from consumer.policy.decision import Frame

if TYPE_CHECKING:  # checks.media downloads through providers.http, which imports this package
    from consumer.checks.media import Media

__all__ = ["Checked", "CsamAnswer", "SimilarityIndex"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checked(Generic[T]):
    """A provider's answer plus what the verdict records about the call."""

    value: T
    provider: str
    model: str | None = None
    model_version: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class CsamAnswer:
    """Hash matching result, plus classifier frames when the combined endpoint ran its classifier."""

    result: CsamResult
    classes: Sequence[Frame] = ()


class SimilarityIndex(Protocol):
    async def query(self, media: Media, tenant: str) -> Checked[Sequence[SimilarityMatch]]: ...

    async def add(self, media: Media, tenant: str, metadata: str) -> str: ...

    async def remove(self, media: Media, tenant: str) -> str | None: ...
