"""The cluster chaos suite's pure helpers: Java's String.hashCode (which transaction state partition
coordinates an id), the quorum tool's answer and the readiness probe, against hostile answers."""

from __future__ import annotations

import httpx
import pytest

from moderation_devtools.cluster import MAX_PROBE_BYTES, java_string_hash, probe, quorum_leader


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 99162322),
        ("polygenelubricants", -(1 << 31)),  # Java's Integer.MIN_VALUE: abs() of it stays negative
        ("é€😀", 233 * 31**3 + 0x20AC * 31**2 + 0xD83D * 31 + 0xDE00),  # UTF-16 units
    ],
)
def test_java_string_hash_is_javas(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def test_the_quorum_leader_is_read_from_its_own_line_only() -> None:
    status = "ClusterId: x\nLeaderId: 2\nLeaderEpoch: 7\nCurrentVoters: [1, 2, 3]\n"
    assert quorum_leader(status) == 2
    assert quorum_leader("LeaderId: -1\n") is None
    assert quorum_leader("NotTheLeaderId: 3\n") is None
    assert quorum_leader("LeaderId: 99999999999999999999\n") is None  # absurd: not a node of ours
    assert quorum_leader("x" * 10_000_000 + "\nLeaderId: 1\n") is None  # only the head is read
    assert quorum_leader("") is None


def answering(status: int, body: bytes) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(status, content=body)))


def test_the_probe_reads_ready_from_the_status_and_keeps_the_body() -> None:
    ready = probe("http://m/readyz", answering(200, b'{"assigned": ["t[0]"], "stalled": []}'))
    assert ready == {"assigned": ["t[0]"], "stalled": [], "ready": True}
    stuck = probe("http://m/readyz", answering(503, b'{"not_committing": ["t[1]"]}'))
    assert stuck is not None and stuck["ready"] is False and stuck["assigned"] == []


@pytest.mark.parametrize(
    "body",
    [
        b"x" * (MAX_PROBE_BYTES + 1),
        b'{"assigned": [' + b"1," * MAX_PROBE_BYTES + b"1]}",
        b"<html>",
        b"[1]",
        b"\xff",
    ],
)
def test_a_probe_answer_that_is_too_big_or_not_an_object_is_not_ready(body: bytes) -> None:
    assert probe("http://m/readyz", answering(200, body)) is None


def test_no_answer_is_not_ready() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no route", request=request)

    assert probe("http://m/readyz", httpx.Client(transport=httpx.MockTransport(refuse))) is None
