"""What a writer schema must be before any record written with it is decoded (pure).

A record in the Confluent framing names its writer schema by an id; whoever can register a schema
(a producer with auto-registration, say) chooses what that id stands for. fastavro's C reader
trusts the writer schema: an array of a type that takes no bytes (``null``, an empty record, a
``fixed`` of size 0) lets ten bytes declare 2^62 items, read in a loop that holds the GIL; a
recursive type nested deep enough overflows the C stack. So a writer schema is checked here first:

- ``check_writer_schema``: JSON of bounded size and depth, no recursive named type, no array whose
  items take no bytes, no schema references; its top level a record.
- ``reader_gap``: whether our reader schema can read it (same record name, every reader field
  without a default present in the writer).
- ``BodyLimits``: before a body larger than ``MAX_COLLECTION_ITEMS`` bytes reaches the C reader,
  a walk over its bytes checks every declared length and block count against the bytes remaining
  and caps the items of all its arrays and maps together, so no record can make the C reader loop
  for long. A smaller body cannot hold more items than it has bytes (no item takes none).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from consumer.errors import SerializationError

__all__ = [
    "MAX_COLLECTION_ITEMS",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "BodyLimits",
    "check_writer_schema",
    "full_name",
    "parse_writer_schema",
    "reader_gap",
]

MAX_SCHEMA_BYTES = 256 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_COLLECTION_ITEMS = 1024  # array items and map entries in one record, all collections together
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def parse_writer_schema(schema_str: str) -> Any:
    """A writer schema's JSON, bounded in size and depth; SerializationError if it is not one."""
    if len(schema_str) > MAX_SCHEMA_BYTES:
        raise SerializationError(f"writer schema of {len(schema_str)} characters is over {MAX_SCHEMA_BYTES}")
    try:
        return json.loads(schema_str)
    except RecursionError:
        raise SerializationError("writer schema nested too deeply") from None
    except ValueError:
        raise SerializationError("writer schema is not JSON") from None


def full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def check_writer_schema(schema: Any) -> None:
    """Refuse (SerializationError, naming the rule) a writer schema the C reader must not be given."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SerializationError("writer schema is not a record")
    _Checker().visit(schema, None, 0, ())


class _Checker:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def visit(self, schema: Any, namespace: str | None, depth: int, enclosing: tuple[str, ...]) -> bool:
        """Walk ``schema``; True when its encoding may take no bytes at all."""
        if depth > MAX_SCHEMA_DEPTH:
            raise SerializationError(f"writer schema nested deeper than {MAX_SCHEMA_DEPTH}")
        if isinstance(schema, str):
            return self._reference(schema, namespace, enclosing)
        if isinstance(schema, list):
            if not schema:
                raise SerializationError("writer schema has an empty union")
            for branch in schema:
                self.visit(branch, namespace, depth + 1, enclosing)
            return False  # the branch index takes a byte
        if not isinstance(schema, dict):
            raise SerializationError("writer schema has a type that is neither a name, a union nor an object")
        kind = schema.get("type")
        if isinstance(kind, (dict, list)):  # {"type": {...}} or {"type": [...]}: the type given inline
            return self.visit(kind, namespace, depth + 1, enclosing)
        if not isinstance(kind, str):
            raise SerializationError("writer schema has an object without a type")
        if kind in _PRIMITIVES:
            return bool(kind == "null")
        if kind == "array":
            if self.visit(schema.get("items"), namespace, depth + 1, enclosing):
                raise SerializationError("writer schema has an array whose items take no bytes (e.g. null)")
            return False
        if kind == "map":
            self.visit(schema.get("values"), namespace, depth + 1, enclosing)
            return False  # each entry's key takes a byte
        if kind in ("record", "error", "enum", "fixed"):
            return self._named(schema, kind, namespace, depth, enclosing)
        return self._reference(kind, namespace, enclosing)

    def _named(
        self, schema: dict[str, Any], kind: str, namespace: str | None, depth: int, enclosing: tuple[str, ...]
    ) -> bool:
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise SerializationError(f"writer schema has a {kind} without a name")
        own_namespace = schema.get("namespace", namespace)
        if own_namespace is not None and not isinstance(own_namespace, str):
            raise SerializationError("writer schema has a namespace that is not a string")
        qualified = full_name(name, own_namespace)
        if qualified in self.named:
            raise SerializationError(f"writer schema defines {qualified} twice")
        if kind == "enum":
            self.named[qualified] = False
            return False
        if kind == "fixed":
            size = schema.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise SerializationError(f"writer schema's fixed {qualified} has no valid size")
            self.named[qualified] = size == 0
            return size == 0
        fields = schema.get("fields")
        if not isinstance(fields, list):
            raise SerializationError(f"writer schema's record {qualified} has no field list")
        self.named[qualified] = None  # being defined: a reference to it from inside is recursion
        empty = True
        inner = (*enclosing, qualified)
        field_namespace = own_namespace if "." not in name else name.rsplit(".", 1)[0]
        for field in fields:
            if not isinstance(field, dict) or "type" not in field:
                raise SerializationError(f"writer schema's record {qualified} has a field without a type")
            empty = self.visit(field["type"], field_namespace, depth + 1, inner) and empty
        self.named[qualified] = empty
        return empty

    def _reference(self, name: str, namespace: str | None, enclosing: tuple[str, ...]) -> bool:
        if name in _PRIMITIVES:
            return name == "null"
        for candidate in (full_name(name, namespace), name):
            if candidate in enclosing:
                raise SerializationError(f"writer schema is recursive ({candidate} contains itself)")
            if candidate in self.named:
                known = self.named[candidate]
                return bool(known)
        raise SerializationError(f"writer schema names an undefined type {name!r}")


def reader_gap(writer: Mapping[str, Any], reader: Mapping[str, Any]) -> str | None:
    """Why our reader schema cannot read records of ``writer`` (None when it can): the records'
    names differ, or a reader field without a default is missing from the writer. Deeper type
    mismatches surface when a body is read (its record's dead letter)."""
    writer_name = full_name(str(writer.get("name")), writer.get("namespace"))
    reader_name = full_name(str(reader.get("name")), reader.get("namespace"))
    aliases = {full_name(a, reader.get("namespace")) for a in reader.get("aliases", [])}
    if writer_name != reader_name and writer_name not in aliases:
        return f"it writes {writer_name}, not {reader_name}"
    written = {f.get("name") for f in writer.get("fields", []) if isinstance(f, dict)}
    for field in reader.get("fields", []):
        names = {field["name"], *field.get("aliases", [])}
        if "default" not in field and not names & written:
            return f"it lacks the field {field['name']}, which has no default"
    return None


# --- bounded reading of a body -----------------------------------------------------------------------
# A checked schema is compiled once into nested closures, each skipping one value at ``pos`` and
# returning the position after it: a walk is a few calls per field (microseconds for an upload).

_Skip = Callable[[bytes, int, "_Count"], int]


class _Count:
    __slots__ = ("items", "limit")

    def __init__(self, limit: int) -> None:
        self.items, self.limit = 0, limit


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        try:
            b = data[pos]
        except IndexError:
            raise SerializationError("it ends inside a number") from None
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise SerializationError("a number longer than ten bytes")


def _over(what: str, n: int, data: bytes, pos: int) -> SerializationError:
    return SerializationError(f"{what} of {n} where {len(data) - pos} bytes remain")


def _skip_null(data: bytes, pos: int, count: _Count) -> int:
    return pos


def _skip_varint(data: bytes, pos: int, count: _Count) -> int:
    if pos < len(data) and data[pos] < 0x80:
        return pos + 1
    return _varint(data, pos)[1]


def _skip_sized(data: bytes, pos: int, count: _Count) -> int:
    if pos < len(data) and data[pos] < 0x80:
        b = data[pos]
        n, pos = (b >> 1) ^ -(b & 1), pos + 1
    else:
        n, pos = _varint(data, pos)
    if n < 0 or n > len(data) - pos:
        raise _over("a length", n, data, pos)
    return pos + n


def _fixed(size: int, what: str) -> _Skip:
    def skip(data: bytes, pos: int, count: _Count) -> int:
        if size > len(data) - pos:
            raise _over(what, size, data, pos)
        return pos + size

    return skip


def _record(fields: list[_Skip]) -> _Skip:
    def skip(data: bytes, pos: int, count: _Count) -> int:
        for field in fields:
            pos = field(data, pos, count)
        return pos

    return skip


def _union(branches: list[_Skip]) -> _Skip:
    def skip(data: bytes, pos: int, count: _Count) -> int:
        if pos < len(data) and data[pos] < 0x80:
            b = data[pos]
            index, pos = (b >> 1) ^ -(b & 1), pos + 1
        else:
            index, pos = _varint(data, pos)
        if not 0 <= index < len(branches):
            raise SerializationError(f"union branch {index} of {len(branches)}")
        return branches[index](data, pos, count)

    return skip


def _enum(symbols: int) -> _Skip:
    def skip(data: bytes, pos: int, count: _Count) -> int:
        index, pos = _varint(data, pos)
        if not 0 <= index < symbols:
            raise SerializationError(f"enum symbol {index} of {symbols}")
        return pos

    return skip


def _blocks(item: _Skip, is_map: bool) -> _Skip:
    def skip(data: bytes, pos: int, count: _Count) -> int:
        while True:
            n, pos = _varint(data, pos)
            if n == 0:
                return pos
            if n < 0:
                n = -n
                pos = _varint(data, pos)[1]  # the block's size in bytes: not trusted, its items are walked
            if n > len(data) - pos:
                raise _over("a block of items", n, data, pos)
            count.items += n
            if count.items > count.limit:
                raise SerializationError(f"more than {count.limit} array items and map entries")
            for _ in range(n):
                if is_map:
                    pos = _skip_sized(data, pos, count)
                pos = item(data, pos, count)

    return skip


_PRIMITIVE_SKIPS: dict[str, _Skip] = {
    "null": _skip_null,
    "boolean": _fixed(1, "a boolean"),
    "int": _skip_varint,
    "long": _skip_varint,
    "float": _fixed(4, "a float"),
    "double": _fixed(8, "a double"),
    "bytes": _skip_sized,
    "string": _skip_sized,
}


class BodyLimits:
    """The walk over a body's bytes for one checked writer schema (see the module docstring)."""

    def __init__(self, schema: Any, max_items: int = MAX_COLLECTION_ITEMS) -> None:
        self.max_items = max_items
        self._named: dict[str, _Skip] = {}
        self._root = self._compile(schema, None)

    def _compile(self, schema: Any, namespace: str | None) -> _Skip:
        if isinstance(schema, str):
            found = _PRIMITIVE_SKIPS.get(schema)
            found = found or self._named.get(full_name(schema, namespace)) or self._named.get(schema)
            if found is None:
                raise SerializationError(f"writer schema names an undefined type {schema!r}")
            return found
        if isinstance(schema, list):
            return _union([self._compile(b, namespace) for b in schema])
        kind = schema["type"]
        if not isinstance(kind, str):  # the type given inline: {"type": {...}} or {"type": [...]}
            return self._compile(kind, namespace)
        if kind in _PRIMITIVE_SKIPS:
            return _PRIMITIVE_SKIPS[kind]
        if kind in ("array", "map"):
            return _blocks(
                self._compile(schema["items" if kind == "array" else "values"], namespace), kind == "map"
            )
        if kind not in ("record", "error", "enum", "fixed"):
            return self._compile(kind, namespace)
        own = schema.get("namespace", namespace)
        qualified = full_name(schema["name"], own)
        if kind == "enum":
            skip = _enum(len(schema.get("symbols", [])))
        elif kind == "fixed":
            skip = _fixed(schema["size"], "a fixed")
        else:
            inner = own if "." not in schema["name"] else schema["name"].rsplit(".", 1)[0]
            skip = _record([self._compile(f["type"], inner) for f in schema["fields"]])
        self._named[qualified] = skip
        return skip

    def check(self, data: bytes, start: int) -> None:
        """SerializationError when ``data[start:]`` declares more than it holds, or more collection
        items than the limit. Only bodies longer than the limit need it."""
        if len(data) - start <= self.max_items:
            return
        self._root(data, start, _Count(self.max_items))
