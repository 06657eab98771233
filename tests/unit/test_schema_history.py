"""``schemas/history/<Name>.v<N>.avsc`` keeps every published version of every schema: the newest is
the shipped one, and each version reads what the one before it wrote (BACKWARD), and the other way
round for an added optional field (FORWARD), so old and new readers and writers mix during a roll-out."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many

from consumer.serde import AvroCodec, default_schema_dir

ROOT = default_schema_dir()
HISTORY = ROOT / "history"
VERSION_FILE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>[1-9][0-9]*)\.avsc$")


def versions() -> dict[str, list[Path]]:
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in HISTORY.glob("*.avsc"):
        match = VERSION_FILE.match(path.name)
        assert match, f"{path.name}: history files are named <Name>.v<N>.avsc"
        found.setdefault(match["name"], []).append((int(match["version"]), path))
    return {name: [p for _, p in sorted(paths)] for name, paths in found.items()}


def schema(path: Path) -> Any:
    return fastavro.parse_schema(json.loads(path.read_text()))


def test_every_shipped_schema_is_its_newest_published_version_and_versions_have_no_gaps() -> None:
    history = versions()
    assert set(history) == {p.stem for p in ROOT.glob("*.avsc")}
    for name, paths in history.items():
        numbers = [int(VERSION_FILE.match(p.name)["version"]) for p in paths]  # type: ignore[index]
        assert numbers == list(range(1, len(paths) + 1)), f"{name}: versions {numbers}"
        newest = json.loads(paths[-1].read_text())
        assert newest == json.loads((ROOT / f"{name}.avsc").read_text()), (
            f"{name}.avsc changed without a new version: copy it to history/{name}.v{len(paths) + 1}.avsc"
        )


def round_trip(record: Any, writer: Any, reader: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, record)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, writer, reader)


@pytest.mark.parametrize(
    ("older", "newer"),
    [(paths[i], paths[i + 1]) for paths in versions().values() for i in range(len(paths) - 1)],
    ids=lambda p: p.name,
)
def test_each_version_reads_the_previous_one_and_the_previous_one_reads_it(older: Path, newer: Path) -> None:
    old, new = schema(older), schema(newer)
    for record in generate_many(old, 20):
        read, same = round_trip(record, old, new), round_trip(record, old, old)  # logical types read alike
        assert {k: read[k] for k in record} == same
    for record in generate_many(new, 20):
        read = round_trip(record, new, old)  # a reader pinned to the older version
        assert set(read) == {f["name"] for f in json.loads(older.read_text())["fields"]}


def test_the_codec_reads_a_record_written_with_every_published_version() -> None:
    codec = AvroCodec()
    for name, paths in versions().items():
        current = {f["name"] for f in codec.raw(name)["fields"]}
        assert len(codec.versions(name)) == len(paths)
        for entry in codec.versions(name):
            record = next(iter(generate_many(entry.parsed, 1)))
            decoded = codec.decode(codec.encode(name, record, version=entry), name)
            assert set(decoded) == current
            same = round_trip(record, entry.parsed, entry.parsed)
            assert all(decoded[k] == v for k, v in same.items() if k in current)
