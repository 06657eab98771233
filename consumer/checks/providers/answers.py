"""What every provider's answer mapper shares: the answer type it reads, the error for a field of
the wrong shape, and the checks of the numbers and strings a verdict may carry (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, TypeGuard

from consumer.errors import ProviderAnswerError

__all__ = ["HttpAnswer", "answer_error", "is_text", "retry_after", "unit"]


class HttpAnswer(Protocol):
    """What the response mappers read of an answer (``httpclient.Answer`` or ``httpx.Response``)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    @property
    def reason_phrase(self) -> str: ...


def answer_error(vendor: str, check: str, where: str, problem: str) -> ProviderAnswerError:
    """``where`` (a field's path) has the wrong shape: named, its value never quoted."""
    prefix = f"{check}: " if check else ""
    return ProviderAnswerError(f"{prefix}{vendor} answer: {where} {problem}", check=check, field=where)


def unit(value: Any) -> float | None:
    """A score: a finite number in [0, 1] (not a bool), as a float; else None."""
    if type(value) is float:
        return value if 0.0 <= value <= 1.0 else None  # NaN fails the comparison
    if type(value) is int and 0 <= value <= 1:
        return float(value)
    return None


def is_text(value: Any, limit: int, *, non_empty: bool = False) -> TypeGuard[str]:
    """A string the verdict can carry: bounded, and valid UTF-8 (``json.loads`` lets lone
    surrogates through, which Avro could not encode)."""
    if type(value) is not str or len(value) > limit or (non_empty and not value):
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds: a finite number >= 0, else None."""
    try:
        seconds = None if value is None else float(value)
    except ValueError:
        return None
    return seconds if seconds is not None and 0.0 <= seconds < math.inf else None
