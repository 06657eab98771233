"""Credentials out of provider messages before they reach verdict reasons, exceptions and logs.

A provider may echo what it was sent (``Authorization: token <key>``, ``X-Auth-Token: <token>``)
in an error body. ``Redactor.redact`` removes the configured secrets wherever they appear, the value after
any credential-looking label, control characters (no forged log lines), and caps the length.

There is no process-wide state: ``redactor_for`` builds a ``Redactor`` holding every secret of the
settings at start, and each new value a secret file gives later (rotation: it is told before the
value is sent anywhere); the wiring adds the checks' own secret options and hands it to the checks
it builds (``BuildContext.redactor``), whose provider transports pass it to the answer mappers. A
transport built without one makes its own, and a transport adds its key to the one it is given, so
the key it sends is never echoed back into a message, whoever built it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from consumer.config import Settings

__all__ = [
    "DEFAULT_LIMIT",
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_CLIENT_CONFIG",
    "Redactor",
    "redactor_for",
]

MASK = "[redacted]"
DEFAULT_LIMIT = 300
MIN_SECRET_LENGTH = 4  # shorter values guard nothing and would garble every message
_ELLIPSIS = "…"
# the Kafka client settings (kafka.client_config) that hold a secret
SECRET_CLIENT_CONFIG = (
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
)

# label, separator, optional auth scheme, then the value up to whitespace, a quote, a comma or ';'
_CREDENTIAL = re.compile(
    r"""\b(?P<label>authorization|x-auth-token|api[_-]?key)(?P<sep>["']?\s*[:=]\s*["']?)"""
    r"""(?:(?:token|bearer|basic)\s+["']?)?[^\s"',;]+"""
    r"""|\b(?P<scheme>(?:[a-z]+[_-])?token|bearer)(?P<gap>["']?\s*[:=]\s*["']?|\s+["']?)[^\s"',;]+""",
    re.IGNORECASE,
)
# C0 controls and DEL become spaces: a provider message must not start a new log line
_CONTROLS = {c: " " for c in [*range(0x20), 0x7F]}


def _mask_credential(match: re.Match[str]) -> str:
    if match.group("label") is not None:
        return f"{match.group('label')}{match.group('sep')}{MASK}"
    return f"{match.group('scheme')}{match.group('gap')}{MASK}"


class Redactor:
    """Removes known secrets and credential-looking values from text, and caps its length."""

    def __init__(self, secrets: Iterable[str] = (), *, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 2:
            raise ValueError("limit must be at least 2 characters")
        self.limit = limit
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._compiled: tuple[re.Pattern[str] | None, int] = (None, 0)  # (secrets, longest), swapped whole
        for secret in secrets:
            self.register(secret)

    def register(self, secret: str | SecretStr | None) -> None:
        """Redact ``secret`` from now on (values shorter than ``MIN_SECRET_LENGTH`` once stripped, such
        as empty ones, are ignored)."""
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not value or len(value.strip()) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            new = {value, value.strip()} - self._secrets
            if not new:
                return
            self._secrets |= new
            ordered = sorted(self._secrets, key=len, reverse=True)  # a secret containing another wins
            self._compiled = (re.compile("|".join(re.escape(s) for s in ordered)), len(ordered[0]))

    def register_options(self, options: object) -> None:
        """Redact a check's own secrets (the ``SecretStr`` fields of its validated options)."""
        if isinstance(options, BaseModel):
            for name in type(options).model_fields:
                value = getattr(options, name)
                if isinstance(value, SecretStr):
                    self.register(value)

    def redact(self, text: str) -> str:
        """``text`` without secrets or credential values, on one line, at most ``limit`` characters."""
        want = 2 * self.limit  # credential masks may lengthen the text a little before the cap
        pattern, longest = self._compiled
        if pattern is None:
            text = text[:want]
        else:
            text = _mask_secrets(text[: want + (want // len(MASK) + 2) * longest], pattern, want)
        text = _CREDENTIAL.sub(_mask_credential, text.translate(_CONTROLS))
        if len(text) > self.limit:
            text = text[: self.limit - len(_ELLIPSIS)] + _ELLIPSIS
        return text


def _mask_secrets(text: str, pattern: re.Pattern[str], want: int) -> str:
    """The first ``want`` characters of ``text`` with every secret masked.

    Masks are shorter than secrets, so cutting first could pull a cut-off secret into the result:
    this reads the matches in order and stops once ``want`` characters are out. The caller's input
    cut keeps every secret that can reach the result whole (``want // len(MASK)`` masks fill it).
    """
    parts: list[str] = []
    size = pos = 0
    for match in pattern.finditer(text):
        start = match.start()
        if size + start - pos >= want:
            break
        parts += (text[pos:start], MASK)
        size += start - pos + len(MASK)
        pos = match.end()
        if size >= want:
            return "".join(parts)
    parts.append(text[pos : pos + want - size])  # no secret starts before the next match
    return "".join(parts)


def redactor_for(settings: Settings) -> Redactor:
    """A redactor holding every secret ``settings`` hold: each section's ``SecretStr`` fields (the
    provider keys and tokens, the callback token, the registry's credentials) and the Kafka
    client's passwords; and every value a secret file is given later (``runtime.secrets``), from
    the moment it is in force. A check's own secret options are added as it is built."""
    redactor = Redactor()
    for name in type(settings).model_fields:
        redactor.register_options(getattr(settings, name))
    for name in SECRET_CLIENT_CONFIG:
        redactor.register(settings.kafka.client_config.get(name))
    for setting in settings.secret_files():  # a file's new value is redacted too (the old one stays)
        live = settings.live_secret(setting)
        if live is not None:
            live.subscribe(redactor.register)
    return redactor
