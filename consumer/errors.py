"""The one exception tree of the service.

```
ModerationError
├── ConfigError               a setting or option is missing or invalid; the process (or tool) stops
├── UnreadableFile            a file opens but is no usable text; the caller names its setting
├── SerializationError        bytes that are not a valid record of a known schema (poison input)
│   └── InvalidRecordError    decoded, but breaks the input contract (missing field, null key, size...)
├── ProviderError             reported by, or on the way to, a remote provider
│   ├── TransientError        worth retrying: 429, 5xx, timeouts, connection errors, Hive 2xxx
│   │   ├── RateLimitedError      429; carries Retry-After when the provider sent one
│   │   ├── ProviderTimeout       no (complete) answer within the attempt's timeout
│   │   ├── ProviderAnswerError   a 200 answer whose body does not have the documented shape
│   │   └── RegistryUnavailable   the schema registry cannot be reached: intake waits, nothing is lost
│   └── PermanentError        retrying cannot help: 400, 403, 404, 405, Hive 3xxx, unsupported media
│       └── MediaTooLarge         URL media over the download bound
├── ExchangeRefused           our HTTP client refused an exchange by its own rule (httpx.TransportError too)
│   ├── EgressRefused         the destination resolves only to addresses the egress policy refuses
│   └── ResponseTooLarge      an answer's body (declared or streamed) over the caller's bound
├── BrokerError               Kafka refused or failed what was asked (a topic missing, not created...)
│   ├── DeliveryError         the broker did not acknowledge a record
│   ├── TransactionLost       the open transaction was aborted: rewind to the committed offsets
│   └── TransactionsBroken    no transactional producer could be had: the process must stop
└── ToolError                 an operator tool (dlq replay, policy backtest) stopped before finishing
```

Transient errors are retried with bounded backoff and, once exhausted, give a fail-closed verdict.
Serialization errors and permanent errors about the content (``PermanentError.concerns_content``)
go to the dead letter topic; other permanent errors (a bad key, no balance) give a fail-closed
verdict carrying the reason, since dead-lettering every upload would flood the topic.
The two ``ExchangeRefused`` errors are also httpx transport errors (``EgressRefused`` an
``httpx.ConnectError`` and an ``OSError``, which aiohttp's resolver path requires), so code that
maps httpx's vocabulary maps them without knowing them. The command line maps the branches to exit
codes (``consumer.cli.main``). Messages never contain API keys or other secrets.
"""

from __future__ import annotations

import httpx

__all__ = [
    "BrokerError",
    "ConfigError",
    "DeliveryError",
    "EgressRefused",
    "ExchangeRefused",
    "InvalidRecordError",
    "MediaTooLarge",
    "ModerationError",
    "PermanentError",
    "ProviderAnswerError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitedError",
    "RegistryUnavailable",
    "ResponseTooLarge",
    "SerializationError",
    "ToolError",
    "TransactionLost",
    "TransactionsBroken",
    "TransientError",
    "UnreadableFile",
]


class ModerationError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(ModerationError):
    """A setting is missing or invalid. ``str()`` is one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


class UnreadableFile(ModerationError):
    """A file that opens but cannot be used as text; ``str()`` is safe to show after its path."""


class SerializationError(ModerationError):
    """Bytes that cannot be decoded into (or encoded from) a known Avro schema."""


class InvalidRecordError(SerializationError):
    """A record that decodes but breaks the input contract: a missing required field, no key, over
    the size limit, an unsupported media type, a malformed media URL."""


class ProviderError(ModerationError):
    """An error reported by, or on the way to, a remote provider."""

    def __init__(self, message: str, *, check: str = "", status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.check = check
        self.status = status
        self.code = code


class TransientError(ProviderError):
    """Worth retrying later: rate limits, 5xx, timeouts, download failures."""


class RateLimitedError(TransientError):
    """HTTP 429. ``retry_after`` is the provider's Retry-After in seconds, if it sent one."""

    def __init__(self, message: str, *, check: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, check=check, status=429)
        self.retry_after = retry_after


class ProviderTimeout(TransientError):
    """No complete answer within an attempt's timeout (counted apart: an overload signal)."""


class ProviderAnswerError(TransientError):
    """A provider answered 200 with a body that does not have the documented shape: a field missing,
    of the wrong type or out of range. ``field`` is the path of the bad field (e.g.
    ``status[0].response.output[1].classes[0].score``); the message names it, never its value.
    Transient: a provider glitch may pass, and once retries are spent the check fails closed."""

    def __init__(self, message: str, *, check: str = "", field: str = "") -> None:
        super().__init__(message, check=check, status=200)
        self.field = field


class RegistryUnavailable(TransientError):
    """The schema registry did not answer (or answered 5xx). Never a dead letter: the record waits,
    retried with backoff while intake is held, until the registry is back."""

    def __init__(self, message: str) -> None:
        super().__init__(message, check="schema_registry")


class PermanentError(ProviderError):
    """Retrying cannot help: bad request, bad key, no balance, unsupported or corrupt media."""

    # HTTP statuses that reject the request's content rather than the caller (key, balance, path)
    _CONTENT_STATUSES = frozenset({413, 415, 422})

    def __init__(
        self,
        message: str,
        *,
        check: str = "",
        status: int | None = None,
        code: str | None = None,
        content: bool | None = None,
    ) -> None:
        super().__init__(message, check=check, status=status, code=code)
        self._content = content  # what the vendor's error table says, when it says

    @property
    def concerns_content(self) -> bool:
        """The upload itself was refused (corrupt, too small, unsupported, unreachable media): a
        dead letter. False for errors about the caller (a bad token, an unknown instance), which
        every upload would hit alike. The vendor's error table decides where it has an entry."""
        if self._content is not None:
            return self._content
        if self.check in ("media", "pipeline"):
            return True
        return self.code is not None or self.status in self._CONTENT_STATUSES


class MediaTooLarge(PermanentError):
    """URL media over the download bound."""


class ExchangeRefused(ModerationError):
    """Our HTTP client refused an exchange by a rule of its own. Each subclass is also an httpx
    transport error, so callers that map httpx's exceptions map these without knowing them."""


class EgressRefused(ExchangeRefused, httpx.ConnectError, OSError):
    """A media URL resolves (or is written as) only addresses the egress policy refuses. An
    ``OSError`` too: raised in aiohttp's resolver, which hands only OSErrors on as connect errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ResponseTooLarge(ExchangeRefused, httpx.TransportError):
    """The answer's body (declared or streamed) is over the caller's bound."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        said = f" (Content-Length {declared})" if declared is not None else ""
        super().__init__(f"response body over the {limit}-byte limit{said}")
        self.limit = limit
        self.declared = declared


class BrokerError(ModerationError):
    """Kafka refused or failed what was asked: a topic missing or not created, a client error."""


class DeliveryError(BrokerError):
    """The broker did not acknowledge a record (delivery timeout, authorization, fatal error).
    ``record_refused``: the record itself was refused (too large, invalid), not the producer."""

    def __init__(self, message: str, *, record_refused: bool = False) -> None:
        super().__init__(message)
        self.record_refused = record_refused


class TransactionLost(BrokerError):
    """The open transaction was aborted (or its producer replaced): rewind to the committed offsets."""


class TransactionsBroken(BrokerError):
    """No transactional producer could be registered within the deadline: the process must stop."""


class ToolError(ModerationError):
    """An operator tool (``dlq replay``, ``policy backtest``) stopped before it finished; the
    message says why (the registry away, the broker refusing)."""
