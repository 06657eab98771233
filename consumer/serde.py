"""Avro encoding of the wire records.

Single-object encoding (``C3 01`` + little-endian CRC-64-AVRO fingerprint of the writer schema's
parsing canonical form + Avro binary body) against the schemas shipped in ``schemas/``. Decoding
resolves the writer schema by fingerprint and reads with the current (reader) schema, so records
written with an older shipped version still decode.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.schema import to_parsing_canonical_form

from consumer.core.writer_schemas import BodyLimits, check_writer_schema
from consumer.errors import SerializationError

__all__ = [
    "SINGLE_OBJECT_MAGIC",
    "AvroCodec",
    "Codec",
    "SchemaEntry",
    "crc64_avro",
    "decode_blocking",
    "default_schema_dir",
]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint the Avro specification names CRC-64-AVRO."""
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def default_schema_dir() -> Path:
    """The schemas shipped as package data (built from the repository's ``schemas/``)."""
    return Path(str(resources.files("consumer") / "schemas"))  # works from a wheel


@dataclass(frozen=True)
class SchemaEntry:
    name: str
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian, as written after the magic
    raw: Any = None  # the schema as shipped (JSON), what a registry is given
    full_name: str = ""  # namespace.name: the subject under RecordNameStrategy
    limits: BodyLimits | None = None  # the walk that bounds a body before fastavro reads it


class Codec(Protocol):
    """What the service reads and writes records with: ``AvroCodec`` (single-object encoding, the
    shipped schemas) or ``schema_registry.RegistryCodec`` (Confluent framing, both read)."""

    def encode(self, name: str, record: dict[str, Any], *, topic: str = "") -> bytes: ...

    def decode(self, data: bytes | None, expected: str, *, topic: str = "") -> dict[str, Any]: ...

    def needs_registry(self, data: bytes | None) -> bool: ...

    def resolve(self, data: bytes, expected: str, *, topic: str) -> dict[str, Any]: ...

    def prepare(self, outputs: Mapping[str, str]) -> None: ...

    def close(self) -> None: ...


def decode_blocking(codec: Codec, data: bytes | None, name: str, topic: str) -> dict[str, Any]:
    """A record in either framing, for tools that may block (a Confluent-framed one whose schema id
    is new here asks the registry); the service itself never calls this on its event loop."""
    if data is not None and codec.needs_registry(data):
        return codec.resolve(data, name, topic=topic)
    return codec.decode(data, name, topic=topic)


class AvroCodec:
    """Encodes records by schema name; decodes any single-object-encoded record of a known schema.

    ``schemas/*.avsc`` are the current versions; ``schemas/history/*.avsc`` hold older versions
    that are still accepted as writer schemas.
    """

    def __init__(self, schema_dir: Path | None = None) -> None:
        root = schema_dir or default_schema_dir()
        self._current: dict[str, SchemaEntry] = {}
        self._by_fingerprint: dict[bytes, SchemaEntry] = {}
        for path in sorted(root.glob("*.avsc")):
            entry = _load(path)
            self._current[entry.name] = entry
            self._by_fingerprint[entry.fingerprint] = entry
        for path in sorted((root / "history").glob("*.avsc")):
            entry = _load(path)
            self._by_fingerprint.setdefault(entry.fingerprint, entry)
        self._by_canonical = {e.canonical: e for e in self._by_fingerprint.values()}
        if not self._current:
            raise SerializationError(f"no Avro schemas found in {root}")

    def schema(self, name: str) -> SchemaEntry:
        try:
            return self._current[name]
        except KeyError:
            raise SerializationError(f"unknown schema {name!r}") from None

    def names(self) -> list[str]:
        return list(self._current)

    def raw(self, name: str) -> Any:
        return self.schema(name).raw

    def full_name(self, name: str) -> str:
        return self.schema(name).full_name

    def needs_registry(self, data: bytes | None) -> bool:
        return False  # every schema is here

    def prepare(self, outputs: Mapping[str, str]) -> None:
        return None  # nothing to learn: the fingerprint is computed from the shipped schema

    def close(self) -> None:
        return None

    def resolve(self, data: bytes, expected: str, *, topic: str) -> dict[str, Any]:
        return self.decode(data, expected)

    def versions(self, name: str) -> list[SchemaEntry]:
        """Every known version of schema ``name`` (current and history)."""
        return [e for e in self._by_fingerprint.values() if e.name == name]

    def encode(
        self, name: str, record: dict[str, Any], *, topic: str = "", version: SchemaEntry | None = None
    ) -> bytes:
        """Encode with the current schema (or an older ``version``, for compatibility tests); the
        framing names the schema, so the ``topic`` does not matter."""
        entry = version or self.schema(name)
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MAGIC)
        buf.write(entry.fingerprint)
        try:
            fastavro.schemaless_writer(buf, entry.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerializationError(f"cannot encode {name}: {exc}") from None
        return buf.getvalue()

    def decode(self, data: bytes | None, expected: str, *, topic: str = "") -> dict[str, Any]:
        """Decode ``data`` as a record of schema ``expected`` (read with its current version)."""
        if not data:
            raise SerializationError("empty value (null or zero bytes)")
        if len(data) < 10 or data[:2] != SINGLE_OBJECT_MAGIC:
            raise SerializationError(
                f"not an Avro single-object encoded record (first bytes {data[:4].hex() or 'none'})"
            )
        writer = self._by_fingerprint.get(data[2:10])
        if writer is None:
            raise SerializationError(f"unknown schema fingerprint {data[2:10].hex()}")
        return self.read_body(data, 10, writer, expected)

    def writer_of(self, canonical: str) -> SchemaEntry | None:
        """The shipped schema (any version) with this parsing canonical form, if one has it."""
        return self._by_canonical.get(canonical)

    def read_body(self, data: bytes, start: int, writer: SchemaEntry, expected: str) -> dict[str, Any]:
        """The Avro body at ``data[start:]``, written with ``writer``, read as the current
        ``expected`` (schema resolution only when an older version wrote it: it costs as much again)."""
        reader = self.schema(expected)
        if writer.name != reader.name:
            raise SerializationError(f"record is a {writer.name}, expected {expected}")
        if writer.limits is not None:
            try:
                writer.limits.check(data, start)
            except SerializationError as exc:
                raise SerializationError(f"corrupt {expected} body: {exc}") from None
        buf = io.BytesIO(data)
        buf.seek(start)
        resolve = None if writer is reader else reader.parsed
        try:
            value = fastavro.schemaless_reader(buf, writer.parsed, resolve)
        except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError) as exc:
            raise SerializationError(f"corrupt {expected} body: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # fastavro raises its own schema-resolution errors
            raise SerializationError(f"cannot read {expected}: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(data):
            raise SerializationError(f"{len(data) - buf.tell()} trailing bytes after the {expected} record")
        if not isinstance(value, dict):
            raise SerializationError(f"{expected} did not decode to a record")
        return value


def _load(path: Path) -> SchemaEntry:
    raw = json.loads(path.read_text())
    check_writer_schema(raw)  # what we read must pass what we ask of others' schemas
    parsed = fastavro.parse_schema(raw)  # keeps the parsed marker: no re-parse per record
    canonical = to_parsing_canonical_form(raw)
    fingerprint = struct.pack("<Q", crc64_avro(canonical.encode()))
    namespace = raw.get("namespace")
    full_name = f"{namespace}.{raw['name']}" if namespace else raw["name"]
    return SchemaEntry(
        raw["name"], parsed, canonical, fingerprint, raw=raw, full_name=full_name, limits=BodyLimits(raw)
    )
