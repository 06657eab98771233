"""What every provider's answer mapper shares: the answer type it reads, the one mapping from an
answer to an error (driven by a vendor's ``ErrorTable``), the error for a field of the wrong shape,
and the checks of the numbers and strings a verdict may carry (pure).

The generic HTTP rules (``HTTP_STATUSES``: 429 rate limited, 408, 425 and 5xx transient, other 4xx
permanent, 413/415/422 refusing the upload) are kept once, here. A vendor declares in an
``ErrorTable`` only what is its own: the statuses its documents give another meaning, and its error
codes; its mapper parses the body, finds the status, code and message, and raises what
``error_for`` returns.
Callers branch on the error's type and attributes (``status``, ``code``, ``retry_after``), never on
its message.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeGuard

import orjson

from consumer.checks.redaction import Redactor
from consumer.errors import PermanentError, ProviderAnswerError, RateLimitedError, TransientError

__all__ = [
    "HTTP_STATUSES",
    "MAX_NOTE",
    "ErrorTable",
    "HttpAnswer",
    "Outcome",
    "Rule",
    "answer_error",
    "error_for",
    "is_text",
    "json_or",
    "provider_words",
    "raise_for_answer",
    "retry_after",
    "unit",
]


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


# --- the answer → error mapping ------------------------------------------------------------------


class Outcome(enum.Enum):
    """What an HTTP status or a vendor code says about the call."""

    OK = "ok"
    PERMANENT = "permanent"  # PermanentError: retrying cannot help
    TRANSIENT = "transient"  # TransientError: worth retrying
    RATE_LIMITED = "rate_limited"  # RateLimitedError (HTTP 429) with the answer's Retry-After


# When the status and the code disagree, the more retryable one wins (the ranks below): a 5xx or a
# retryable code is retried whatever the other says; bounded retries then fail the check closed.
_RANK = {Outcome.OK: 0, Outcome.PERMANENT: 1, Outcome.TRANSIENT: 2, Outcome.RATE_LIMITED: 3}
MAX_NOTE = 60  # a note rides in every message of its entry: short, so messages stay bounded


class Rule(NamedTuple):
    """One table entry: the outcome, and what the status or code means (from the vendor's docs),
    which goes into the error's message. ``content``: whether a permanent error refuses the upload
    itself (a dead letter) or the caller (a fail-closed verdict); None leaves it to the error."""

    outcome: Outcome
    note: str = ""
    content: bool | None = None


_TRANSIENT = Rule(Outcome.TRANSIENT)
_PERMANENT = Rule(Outcome.PERMANENT)
_OK = Rule(Outcome.OK)

# What an HTTP status means whoever answers it (RFC 9110 and the usual gateway statuses); a status
# listed nowhere is TRANSIENT from 500 on and PERMANENT otherwise.
HTTP_STATUSES: Mapping[int, Rule] = MappingProxyType(
    {
        200: Rule(Outcome.OK, "success"),
        400: Rule(Outcome.PERMANENT, "bad request"),
        401: Rule(Outcome.PERMANENT, "unauthorized"),
        403: Rule(Outcome.PERMANENT, "forbidden"),
        404: Rule(Outcome.PERMANENT, "not found"),
        408: Rule(Outcome.TRANSIENT, "request timeout"),
        413: Rule(Outcome.PERMANENT, "payload too large", content=True),
        415: Rule(Outcome.PERMANENT, "unsupported media type", content=True),
        422: Rule(Outcome.PERMANENT, "unprocessable content", content=True),
        425: Rule(Outcome.TRANSIENT, "too early"),
        429: Rule(Outcome.RATE_LIMITED, "too many requests"),
        500: Rule(Outcome.TRANSIENT, "internal server error"),
        502: Rule(Outcome.TRANSIENT, "bad gateway"),
        503: Rule(Outcome.TRANSIENT, "service unavailable"),
        504: Rule(Outcome.TRANSIENT, "gateway timeout"),
    }
)


@dataclass(frozen=True, eq=False, slots=True)
class ErrorTable:
    """One vendor's answers, declared (pure data).

    ``statuses`` holds the HTTP statuses the vendor's documents give a meaning of their own (they
    win over ``HTTP_STATUSES``, which holds the rest; ``listed_statuses`` is both). ``codes`` maps
    the vendor's own error codes exactly; ``code_prefixes`` covers families of codes (the longest
    matching prefix wins); any other code is ``unknown_code``. RATE_LIMITED is for statuses only
    (``RateLimitedError`` is HTTP 429). ``vendor`` names the provider in messages; ``code_label``
    names a code that comes without a status (``task error 2001``)."""

    vendor: str
    statuses: Mapping[int, Rule] = field(default_factory=dict)
    codes: Mapping[str, Rule] = field(default_factory=dict)
    code_prefixes: Mapping[str, Rule] = field(default_factory=dict)
    unknown_code: Rule = _PERMANENT
    code_label: str = ""
    _prefixes: tuple[tuple[str, Rule], ...] = field(init=False, repr=False)
    _statuses: Mapping[int, Rule] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        coded = [*self.codes.values(), *self.code_prefixes.values(), self.unknown_code]
        if any(rule.outcome is Outcome.RATE_LIMITED for rule in coded):
            raise ValueError(f"{self.vendor}: RATE_LIMITED is for HTTP statuses, not vendor codes")
        if any(len(rule.note) > MAX_NOTE for rule in [*coded, *self.statuses.values()]):
            raise ValueError(f"{self.vendor}: a note is longer than {MAX_NOTE} characters")
        if "" in self.code_prefixes:
            raise ValueError(f"{self.vendor}: an empty code prefix (use unknown_code)")
        object.__setattr__(self, "statuses", MappingProxyType(dict(self.statuses)))
        object.__setattr__(self, "_statuses", MappingProxyType({**HTTP_STATUSES, **self.statuses}))
        object.__setattr__(self, "codes", MappingProxyType(dict(self.codes)))
        object.__setattr__(self, "code_prefixes", MappingProxyType(dict(self.code_prefixes)))
        longest_first = sorted(self.code_prefixes.items(), key=lambda item: -len(item[0]))
        object.__setattr__(self, "_prefixes", tuple(longest_first))

    @property
    def listed_statuses(self) -> Mapping[int, Rule]:
        """Every status with an entry: the vendor's own, then the generic HTTP rules."""
        return self._statuses

    def for_status(self, status: int) -> Rule:
        rule = self._statuses.get(status)
        if rule is not None:
            return rule
        return _TRANSIENT if status >= 500 else _PERMANENT

    def for_code(self, code: str) -> Rule:
        rule = self.codes.get(code)
        if rule is not None:
            return rule
        for prefix, family in self._prefixes:
            if code.startswith(prefix):
                return family
        return self.unknown_code

    def rules(self, status: int | None = None, code: str | None = None) -> list[Rule]:
        """The entries an answer falls under, its code's first (it says more)."""
        rules = []
        if code:
            rules.append(self.for_code(code))
        if status is not None:
            rules.append(self.for_status(status))
        return rules

    def rule(self, status: int | None = None, code: str | None = None) -> Rule:
        """The rule an answer falls under: its status's, its code's, or the more retryable of both
        (the code's on a tie). OK when there is neither."""
        return max(self.rules(status, code), key=lambda rule: _RANK[rule.outcome], default=_OK)

    def concerns_content(self, status: int | None = None, code: str | None = None) -> bool | None:
        """What the entries say about whom an error refuses: the code's word, else the status's."""
        return next((r.content for r in self.rules(status, code) if r.content is not None), None)


def error_for(
    table: ErrorTable,
    check: str,
    *,
    redactor: Redactor,
    status: int | None = None,
    code: str | None = None,
    message: str = "",
    retry_after: float | None = None,
) -> TransientError | PermanentError | None:
    """The error an answer maps to under ``table``, or None when it is a success.

    ``message`` is the provider's own words (through ``redactor`` here: a provider may echo our key); the
    entry's note follows it. The error carries ``check``, ``status``, ``code`` (and ``retry_after``
    when rate limited): what callers branch on."""
    rule = table.rule(status, code)
    if rule.outcome is Outcome.OK:
        return None
    if status is not None:
        head = f"HTTP {status} {code}" if code else f"HTTP {status}"
    else:
        head = f"{table.code_label} {code}".lstrip()
    note = f" ({rule.note})" if rule.note else ""
    prefix = f"{check}: " if check else ""
    text = f"{prefix}{table.vendor} {head}: {redactor.redact(message or 'no message')}{note}"
    if rule.outcome is Outcome.RATE_LIMITED:
        return RateLimitedError(text, check=check, retry_after=retry_after)
    if rule.outcome is Outcome.TRANSIENT:
        return TransientError(text, check=check, status=status, code=code or None)
    content = table.concerns_content(status, code)
    return PermanentError(text, check=check, status=status, code=code or None, content=content)


def raise_for_answer(
    table: ErrorTable,
    resp: HttpAnswer,
    check: str,
    *,
    redactor: Redactor,
    message: str,
    code: str | None = None,
) -> None:
    """Raise what an HTTP answer maps to under ``table`` (its status, the vendor's ``code`` and its
    Retry-After), if anything: what every vendor's mapper does before reading a success's body."""
    wait = retry_after(resp.headers.get("retry-after"))
    error = error_for(
        table, check, redactor=redactor, status=resp.status_code, code=code, message=message, retry_after=wait
    )
    if error is not None:
        raise error


def json_or(content: bytes, default: Any) -> Any:
    """``content`` as JSON (any bytes in any encoding, any nesting), or ``default``: never raises."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return default


def provider_words(resp: HttpAnswer, body: Any, *names: str) -> str:
    """The provider's own words about a failure: the first non-empty string among ``body``'s
    ``names`` fields, else the answer's reason phrase (``error_for`` redacts them)."""
    if isinstance(body, dict):
        for name in names:
            text = body.get(name)
            if isinstance(text, str) and text:
                return text
    return resp.reason_phrase or "no message"


# --- answer shapes -------------------------------------------------------------------------------


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
