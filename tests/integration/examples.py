"""What the tests of `examples/` share: an example stands alone, its own stderr, and records written
in a committed or an aborted transaction (what a ``read_committed`` reader must skip)."""

from __future__ import annotations

import ast
from pathlib import Path

from confluent_kafka import Producer

__all__ = ["assert_stands_alone", "in_transaction", "own_lines"]

OURS = ("consumer", "moderation_simulator", "moderation_devtools")


def assert_stands_alone(example: Path) -> None:
    """The example imports nothing of this project's and uses confluent-kafka."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(example.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    ours = {m for m in modules if m.split(".")[0] in OURS}
    assert not ours and any(m.startswith("confluent_kafka") for m in modules)


def own_lines(stderr: str) -> list[str]:
    """What a command wrote to stderr itself (librdkafka's log lines start with ``%``)."""
    return [line for line in stderr.splitlines() if not line.startswith("%")]


def in_transaction(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], *, abort: bool, name: str
) -> None:
    """``records`` on ``topic`` in one transaction (transactional id from ``name``), committed or
    aborted."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{name}-{topic}-{abort}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    producer.flush(30)
    if abort:
        producer.abort_transaction(30)
    else:
        producer.commit_transaction(30)
