"""The one exception tree of the service.

```
ModerationError
├── ConfigError               a setting is missing or invalid; the process stops at start
├── SerializationError        bytes that are not a valid record of a known schema (poison input)
│   └── InvalidRecordError    decoded, but breaks the input contract (missing field, null key, size...)
├── TransientError            worth retrying: 429, 5xx, timeouts, connection errors, Hive 2xxx
│   ├── RateLimitedError      429; carries Retry-After when the provider sent one
│   ├── ProviderTimeout       no (complete) answer within the attempt's timeout
│   ├── ProviderAnswerError   a 200 answer whose body does not have the documented shape
│   └── RegistryUnavailable   the schema registry cannot be reached: intake waits, nothing is lost
└── PermanentError            retrying cannot help: 400, 403, 404, 405, Hive 3xxx, unsupported media
```

Transient errors are retried with bounded backoff and, once exhausted, give a fail-closed verdict.
Serialization errors and permanent errors about the content (``PermanentError.concerns_content``)
go to the dead letter topic; other permanent errors (a bad key, no balance) give a fail-closed
verdict carrying the reason, since dead-lettering every upload would flood the topic.
Messages never contain API keys or other secrets.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidRecordError",
    "ModerationError",
    "PermanentError",
    "ProviderAnswerError",
    "ProviderTimeout",
    "RateLimitedError",
    "RegistryUnavailable",
    "SerializationError",
    "TransientError",
]


class ModerationError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(ModerationError):
    """A setting is missing or invalid. ``str()`` is one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


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
