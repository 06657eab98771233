"""An HTTP answer for the vendor answer targets: the first input byte picks the status, the second
the parser (and whether a Retry-After header comes along), the rest is the body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["STATUSES", "Answer", "answer_of"]

STATUSES = (200, 200, 200, 200, 202, 400, 401, 403, 404, 405, 413, 415, 422, 429, 500, 502, 503, 504, 302, 0)


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    reason_phrase: str = "OK"


def answer_of(data: bytes) -> tuple[Answer, int] | None:
    """(the answer, the parser selector), or None for an input too short to hold both."""
    if len(data) < 2:
        return None
    status = STATUSES[data[0] % len(STATUSES)]
    headers = (
        {"retry-after": ("1.5", "-3", "nan", "1e999", "Wed, 21 Oct 2015")[data[1] % 5]}
        if data[1] & 0x80
        else {}
    )
    return Answer(status, data[2:], headers, "Some Reason"), data[1] & 0x7F
