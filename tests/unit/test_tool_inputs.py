"""Files given to the tools are outside input: ``policy backtest --input`` and ``schemas --schema-dir``
refuse hostile files with one line (ConfigError), quickly, never hanging or crashing."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.errors import ConfigError
from consumer.policy.backtest import read_verdict_file
from consumer.serde import AvroCodec
from tests.unit.test_policies import policies, verdict_for, visual


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _container(schema: Any, body: bytes, count: int = 1) -> bytes:
    """An Avro container file of ``schema`` holding one block of ``count`` records: ``body``."""
    head = io.BytesIO()
    fastavro.writer(head, schema, [])
    header = head.getvalue()
    sync = header[-16:]
    return header + _zigzag(count) + _zigzag(len(body)) + body + sync


def test_a_verdict_file_of_a_look_alike_schema_is_refused_before_any_record_is_read(
    tmp_path: Path,
) -> None:
    lookalike = {
        "type": "record",
        "name": "ModerationVerdict",
        "namespace": "moderation",
        "fields": [{"name": "padding", "type": {"type": "array", "items": "null"}}],
    }
    evil = tmp_path / "evil.avro"
    evil.write_bytes(_container(lookalike, _zigzag(1 << 40) + _zigzag(0)))  # 2^40 nulls in 11 bytes
    started = time.monotonic()
    with pytest.raises(ConfigError, match="another schema"):
        list(read_verdict_file(evil))
    assert time.monotonic() - started < 5


def test_a_verdict_file_of_our_schema_is_read(tmp_path: Path) -> None:
    record = verdict_for(policies().default, visual(general_nsfw=0.7)).to_avro()
    good = tmp_path / "good.avro"
    with good.open("wb") as f:
        fastavro.writer(f, AvroCodec().schema("ModerationVerdict").raw, [record])
    assert len(list(read_verdict_file(good))) == 1


def test_a_verdict_file_that_is_deeply_nested_or_not_regular_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_bytes(b"[" * 200_000 + b"\n")
    with pytest.raises(ConfigError, match="--input"):
        list(read_verdict_file(deep))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        list(read_verdict_file(fifo))  # opening a FIFO would wait for a writer forever
    assert time.monotonic() - started < 5


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _schema_dir(tmp_path: Path) -> Path:
    """A copy of the shipped schemas, to spoil one file of."""
    shipped = AvroCodec()
    root = tmp_path / "schemas"
    root.mkdir()
    for name in shipped.names():
        (root / f"{name}.avsc").write_text(json.dumps(shipped.raw(name)))
    return root


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda p: p.write_bytes(b"[" * 200_000), "nested too deeply|not JSON|cannot read"),
        (lambda p: p.write_bytes(b" " * (2 << 20)), "over the"),
        (lambda p: _fifo(p), "not a regular file"),
        (lambda p: p.write_bytes(b"\xff\xfe not json"), "cannot read|not JSON"),
        (lambda p: p.write_text('{"type": "record", "name": "UploadEvent"}'), "cannot read"),
    ],
    ids=["deep", "huge", "fifo", "binary", "no-fields"],
)
def test_schemas_check_refuses_a_hostile_schema_dir_in_one_line(
    tmp_path: Path, spoil: object, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from consumer.cli.main import main

    root = _schema_dir(tmp_path)
    spoil(root / "UploadEvent.avsc")  # type: ignore[operator]
    env = {"MODERATION_SCHEMA_REGISTRY__URL": "http://127.0.0.1:9"}  # never reached
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        code = main(["schemas", "check", "--schema-dir", str(root)])
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "--schema-dir" in err
    assert __import__("re").search(reason, err), err
