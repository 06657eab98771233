"""A secret that may change while the service runs (pure): the holder the provider transports and
the schema registry client read, and the rules a secret file's bytes must pass.

A ``RotatingSecret`` holds one setting's value now. Readers call ``current()`` per request (an
attribute read: no file I/O, no lock); the file watch (``runtime.secrets``) calls ``replace`` when
the setting's file holds a new value, and every subscriber (the redactor, the registry codec) hears
of it at once, on the caller's thread, before ``replace`` returns. A value is never part of a
``repr`` or a message.

A secret file is outside bytes (an operator's Secret, a mounted volume): ``secret_text`` accepts
at most ``MAX_SECRET_FILE_BYTES``, UTF-8 (a BOM dropped), one trailing line break dropped (``\\n``
or ``\\r\\n``, as ``echo`` and editors leave it), and refuses an empty value and any control
character (a value with a line break inside would forge a header or a log line).
"""

from __future__ import annotations

from collections.abc import Callable

from consumer.errors import UnreadableFile

__all__ = ["MAX_SECRET_FILE_BYTES", "RotatingSecret", "secret_text"]

MAX_SECRET_FILE_BYTES = 64 << 10  # *_key_file, token_file, basic_auth_user_info_file, bearer_token_file


def _control(c: str) -> bool:
    code = ord(c)
    return code < 0x20 or 0x7F <= code <= 0x9F or c in "\u2028\u2029"


def secret_text(data: bytes, limit: int = MAX_SECRET_FILE_BYTES) -> str:
    """The secret a file's bytes hold; ``UnreadableFile`` naming why not (never the value)."""
    if len(data) > limit:
        raise UnreadableFile(f"over the {limit}-byte limit")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    if not text:
        raise UnreadableFile("empty")
    for offset, c in enumerate(text):
        if _control(c):
            raise UnreadableFile(f"a control character (U+{ord(c):04X}) at offset {offset}")
    return text


class RotatingSecret:
    """One secret setting's value now (``setting``: its name, e.g. ``hive.visual_key``)."""

    __slots__ = ("_listeners", "_value", "setting", "version")

    def __init__(self, setting: str, value: str) -> None:
        self.setting = setting
        self._value = value
        self.version = 0  # how many times the value changed
        self._listeners: list[Callable[[str], None]] = []

    def current(self) -> str:
        return self._value

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """``listener(new value)`` on every change from now on."""
        self._listeners.append(listener)

    def replace(self, value: str) -> bool:
        """Make ``value`` current; False (and nothing told) when it is the value already. Every
        subscriber is told even if one raises (the first exception is raised after)."""
        if value == self._value:
            return False
        self._value = value
        self.version += 1
        failed: Exception | None = None
        for listener in tuple(self._listeners):  # every one hears of it, whichever fails
            try:
                listener(value)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return True

    def __repr__(self) -> str:
        return f"RotatingSecret({self.setting!r}, version={self.version})"
