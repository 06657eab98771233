"""The simulator's hostile mode: raw answers checked byte by byte over raw sockets, streams that stop
when the client leaves, and the ``wrong_shape`` / ``echo_credentials`` faults of the normal simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from moderation_devtools.broker import free_port
from moderation_devtools.stack import SimulatorProcess, wait_until_async
from moderation_simulator import HostileLimits, HostileServer, SimulatorState, serve
from moderation_simulator.__main__ import main
from moderation_simulator.etiquette import Faults
from moderation_simulator.state import DEFAULT_HUAWEI_TOKEN, DEFAULT_KEYS, StartupSettings

MAIN_PORT = 4321
FAST = HostileLimits(drip_interval_s=0.1, slow_interval_s=0.05, giant_json_bytes=300_000)
Head = tuple[bytes, dict[str, str]]


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever the client does, the servers log no warning, error or traceback."""
    caplog.set_level(logging.WARNING)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    async with HostileServer(main_port=MAIN_PORT, limits=FAST) as server:
        yield server


POLL_S = 0.01  # how often eventually() looks again, until its deadline


async def eventually(condition: Callable[[], bool], within_s: float = 1.5) -> None:
    assert await wait_until_async(condition, within_s, poll_s=POLL_S), "condition not met in time"


async def send(
    port: int, path: str, *, method: str = "GET", body: bytes = b"", headers: tuple[str, ...] = ()
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *headers, "", ""]
    writer.write("\r\n".join(lines).encode() + body)
    await writer.drain()
    return reader, writer


async def read_head(reader: asyncio.StreamReader) -> Head:
    async with asyncio.timeout(2):
        raw = await reader.readuntil(b"\r\n\r\n")
    status, *lines = raw[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    async with asyncio.timeout(2):
        return await reader.readexactly(n)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(2):
        return await reader.read()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # the server may have reset the connection first
        await writer.wait_closed()


async def fetch(port: int, path: str, **kwargs: Any) -> tuple[Head, bytes]:
    """A finite answer: its head, and exactly Content-Length bytes, then the server closes."""
    reader, writer = await send(port, path, **kwargs)
    head = await read_head(reader)
    body = await read_exactly(reader, int(head[1]["content-length"]))
    assert await read_to_end(reader) == b""
    await close(writer)
    return head, body


async def leave(server: HostileServer, writer: asyncio.StreamWriter) -> None:
    """Disconnect, then the server stops answering at once."""
    await close(writer)
    await eventually(lambda: server.stats.active == 0)


# --- broken framing and endless bodies -------------------------------------------------------------------


async def test_chunked_negative_sends_a_negative_chunk_size_then_keeps_going(hostile: HostileServer) -> None:
    reader, writer = await send(hostile.port, "/chunked-negative.png", method="POST", body=b"x" * 300_000)
    status, headers = await read_head(reader)
    assert status == b"HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    assert await read_exactly(reader, 11) == b"-5\r\nhello\r\n"
    assert await read_exactly(reader, 10) == b"5\r\nmore!\r\n"  # slowly, for as long as we listen
    await leave(hostile, writer)


async def test_chunked_giant_announces_a_64_bit_chunk_and_streams(hostile: HostileServer) -> None:
    reader, writer = await send(hostile.port, "/chunked-giant")
    _, headers = await read_head(reader)
    assert headers["transfer-encoding"] == "chunked"
    assert await read_exactly(reader, 18) == b"FFFFFFFFFFFFFFFF\r\n"
    await read_exactly(reader, 1_000_000)
    await leave(hostile, writer)


async def test_endless_is_well_formed_chunks_of_64_kib_forever(hostile: HostileServer) -> None:
    reader, writer = await send(hostile.port, "/endless/cat.png")
    _, headers = await read_head(reader)
    assert headers["content-type"] == "image/png" and headers["transfer-encoding"] == "chunked"
    assert await read_exactly(reader, 13) == b"8\r\n\x89PNG\r\n\x1a\n\r\n"
    for _ in range(20):
        assert await read_exactly(reader, 7) == b"10000\r\n"
        assert await read_exactly(reader, 65536 + 2) == bytes(65536) + b"\r\n"
    await leave(hostile, writer)


async def test_endless_close_has_no_length_and_no_chunking(hostile: HostileServer) -> None:
    reader, writer = await send(hostile.port, "/endless-close")
    _, headers = await read_head(reader)
    assert headers["connection"] == "close"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert (await read_exactly(reader, 2_000_000)).startswith(b"\x89PNG")
    await leave(hostile, writer)
    assert hostile.stats.requests == {"/endless-close": 1}


async def test_huge_length_announces_5_gb(hostile: HostileServer) -> None:
    reader, writer = await send(hostile.port, "/huge-length")
    _, headers = await read_head(reader)
    assert headers["content-length"] == "5000000000"
    await read_exactly(reader, 1_000_000)
    await leave(hostile, writer)


async def test_drip_sends_one_byte_per_interval(hostile: HostileServer) -> None:
    asked = time.monotonic()  # before the request: the second byte cannot come sooner than an interval
    reader, writer = await send(hostile.port, "/drip")
    _, headers = await read_head(reader)
    assert headers["content-length"] == "1000000"
    assert await read_exactly(reader, 2) == b"\x89P"
    assert time.monotonic() - asked >= FAST.drip_interval_s * 0.9
    await leave(hostile, writer)


async def test_a_client_that_stops_reading_costs_little_memory(hostile: HostileServer) -> None:
    _, writer = await send(hostile.port, "/endless")
    await eventually(lambda: hostile.stats.stalled == 1)  # kernel buffers full, the server waits
    assert hostile.stats.peak_write_buffer <= 256 * 1024
    await leave(hostile, writer)


async def test_streams_end_at_the_deadline_even_if_the_client_never_reads() -> None:
    async with HostileServer(limits=HostileLimits(stream_s=0.3)) as server:
        _, endless = await send(server.port, "/endless")
        _, drip = await send(server.port, "/drip")
        await eventually(lambda: server.stats.requests.get("/drip") == 1)
        await eventually(lambda: server.stats.active == 0)
        await close(endless)
        await close(drip)


async def test_a_client_leaving_mid_request_body_is_no_error(hostile: HostileServer) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", hostile.port)
    writer.write(b"POST /endless HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    await writer.drain()
    await eventually(lambda: hostile.stats.active == 1)
    await leave(hostile, writer)
    assert hostile.stats.bytes_sent == 0


async def test_stopping_ends_streams_in_progress() -> None:
    server = HostileServer(limits=FAST)
    await server.start()
    _, first = await send(server.port, "/endless-close")
    _, second = await send(server.port, "/drip")
    await eventually(lambda: server.stats.stalled == 1 and server.stats.active == 2)  # one waits to write
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.0 and server.stats.active == 0  # 1 s: aiohttp's own patience
    await close(first)
    await close(second)


# --- redirects ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/redirect-loopback", f"http://127.0.0.1:{MAIN_PORT}/media/anything.png"),
        ("/redirect-metadata/x.png", "http://169.254.169.254/latest/meta-data/"),
        ("/redirect-loop/a.png?x=%0d%0a", "/redirect-loop/a.png?x=%0d%0a"),
    ],
)
async def test_redirects(hostile: HostileServer, path: str, location: str) -> None:
    (status, headers), body = await fetch(hostile.port, path)
    assert status == b"HTTP/1.1 302 Found" and headers["location"] == location
    assert location.encode() in body


async def test_redirect_empty_has_an_empty_body_and_its_target_is_missing(hostile: HostileServer) -> None:
    (status, headers), body = await fetch(hostile.port, "/redirect-empty", method="POST", body=b"{}")
    assert status == b"HTTP/1.1 302 Found" and headers["location"] == "/redirect-empty-target"
    assert headers["content-length"] == "0" and body == b""
    (status, _), _ = await fetch(hostile.port, "/redirect-empty-target")
    assert status == b"HTTP/1.1 404 Not Found"


# --- provider impersonation --------------------------------------------------------------------------------


async def shape(server: HostileServer, path: str, **kwargs: Any) -> Any:
    (status, headers), body = await fetch(server.port, path, method="POST", body=b"media=x", **kwargs)
    assert status == b"HTTP/1.1 200 OK" and headers["content-type"] == "application/json"
    return json.loads(body)


async def test_score_string_is_a_hive_task_body_with_string_scores(hostile: HostileServer) -> None:
    body = await shape(hostile, "/shape/score-string/api/v1/task/sync")
    status = body["status"][0]
    assert status["status"]["code"] == "0"
    scores = {c["class"]: c["score"] for c in status["response"]["output"][0]["classes"]}
    assert scores["general_nsfw"] == "high" and all(isinstance(s, str) for s in scores.values())
    v2 = await shape(hostile, "/shape/score-string/api/v2/task/sync")
    assert v2["status"][0]["status"]["code"] == 200


async def test_output_and_status_of_the_wrong_shape(hostile: HostileServer) -> None:
    body = await shape(hostile, "/shape/output-not-objects/api/v1/task/sync")
    output = body["status"][0]["response"]["output"]
    assert output and not any(isinstance(item, dict) for item in output)
    assert isinstance((await shape(hostile, "/shape/status-not-list/api/v1/task/sync"))["status"], str)


async def test_not_json(hostile: HostileServer) -> None:
    (status, _), body = await fetch(hostile.port, "/shape/not-json/api/v1/task/sync")
    assert status == b"HTTP/1.1 200 OK" and body == b"<html>"
    with pytest.raises(ValueError):
        json.loads(body)


async def test_huawei_result_garbage(hostile: HostileServer) -> None:
    body = await shape(hostile, "/shape/huawei-result-garbage/v1/p/i/image/search")
    assert body == {"count": "x", "result": [1, "a", {"sim": "high"}]}


async def test_hashes_garbage(hostile: HostileServer) -> None:
    body = await shape(hostile, "/shape/hashes-garbage/api/v1/task/sync")
    hashes = body["status"][0]["response"]["output"][0]["hashes"]
    assert any(not isinstance(h["matches"], list) for h in hashes)
    distances = [m["matchDistance"] for h in hashes if isinstance(h["matches"], list) for m in h["matches"]]
    distances += [h["matches"]["matchDistance"] for h in hashes if isinstance(h["matches"], dict)]
    assert distances and all(isinstance(d, str) for d in distances)


async def test_deep_json_nests_100000_levels(hostile: HostileServer) -> None:
    (_, headers), body = await fetch(hostile.port, "/shape/deep/api/v1/task/sync")
    assert headers["content-length"] == "200000" and body == b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(body)


async def test_giant_json_is_valid_json_of_exactly_the_announced_size(hostile: HostileServer) -> None:
    body = await shape(hostile, "/shape/giant-json/api/v1/task/sync")
    frames = body["status"][0]["response"]["output"]
    assert len(frames) > 1000 and frames[0]["classes"][0]["class"] == "general_nsfw"


async def test_giant_json_is_50_mb_by_default() -> None:
    async with HostileServer() as server:
        reader, writer = await send(server.port, "/shape/giant-json")
        _, headers = await read_head(reader)
        assert headers["content-length"] == "50000000"
        await read_exactly(reader, 1_000_000)
        await leave(server, writer)


async def test_echo_repeats_the_credentials(hostile: HostileServer) -> None:
    auth = ("Authorization: token sk-very-secret", "X-Auth-Token: iam-secret-token")
    (status, _), raw = await fetch(hostile.port, "/echo/api/v1/task/sync", method="POST", headers=auth)
    body = json.loads(raw)
    assert status == b"HTTP/1.1 403 Forbidden" and body["return_code"] == 403
    assert "token sk-very-secret" in body["message"] and "iam-secret-token" in body["message"]
    assert body["error_code"] == "IS.0004" and body["error_msg"] == "token iam-secret-token invalid"


async def test_unknown_path_is_404_listing_the_paths(hostile: HostileServer) -> None:
    (status, _), body = await fetch(hostile.port, "/nothing")
    assert status == b"HTTP/1.1 404 Not Found" and "/chunked-negative" in json.loads(body)["paths"]


# --- within the simulator ----------------------------------------------------------------------------------


@asynccontextmanager
async def simulator(
    state: SimulatorState | None = None, **kwargs: Any
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve("127.0.0.1", port, state, ready=ready, **kwargs))
    try:
        async with asyncio.timeout(2):
            await ready.wait()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            yield f"http://127.0.0.1:{port}", client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_admin_hostile_reports_the_hostile_server() -> None:
    async with simulator(hostile_port=0) as (url, client):
        r = await client.get("/_admin/hostile")
        port = r.json()["port"]
        assert r.status_code == 200 and r.json()["url"] == f"http://127.0.0.1:{port}"
        (_, headers), _ = await fetch(port, "/redirect-loopback")
        assert headers["location"] == f"{url}/media/anything.png"


async def test_admin_hostile_is_404_without_a_hostile_port() -> None:
    async with simulator() as (_, client):
        assert (await client.get("/_admin/hostile")).status_code == 404


async def text_task(client: httpx.AsyncClient, key: str = DEFAULT_KEYS["text"]) -> httpx.Response:
    return await client.post(
        "/api/v1/task/sync", headers={"authorization": f"token {key}"}, data={"text_data": "hello"}
    )


async def image_search(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(
        "/v1/p/i/image/search", headers={"X-Auth-Token": DEFAULT_HUAWEI_TOKEN}, json={"tags": {"t": "a"}}
    )


async def test_wrong_shape_fault() -> None:
    async with simulator() as (_, client):
        faults = (await client.post("/_admin/faults", json={"wrong_shape": 1.0})).json()
        assert faults["wrong_shape"] == 1.0 and faults["echo_credentials"] == 0.0
        hive = await text_task(client)
        classes = hive.json()["status"][0]["response"]["output"][0]["classes"]
        assert hive.status_code == 200 and {c["score"] for c in classes} == {"high", "0.01"}
        csam = (await text_task(client, DEFAULT_KEYS["csam"])).json()
        assert not isinstance(csam["status"][0]["response"]["output"][0]["hashes"][1]["matches"], list)
        index = await client.post(
            "/api/v2/custom_index/query/sync", headers={"authorization": f"token {DEFAULT_KEYS['index']}"}
        )
        assert index.status_code == 200 and isinstance(index.json()["status"], str)
        huawei = await image_search(client)
        assert huawei.status_code == 200 and huawei.json()["result"] == [1, "a", {"sim": "high"}]


async def test_echo_credentials_fault() -> None:
    async with simulator() as (_, client):
        await client.post("/_admin/faults", json={"echo_credentials": 1.0})
        hive = await text_task(client)
        assert hive.status_code == 403 and DEFAULT_KEYS["text"] in hive.json()["message"]
        huawei = await image_search(client)
        assert huawei.status_code == 400 and huawei.json()["error_code"] == "IS.0004"
        assert huawei.json()["error_msg"] == f"token {DEFAULT_HUAWEI_TOKEN} invalid"
        wrong_key = await text_task(client, "not-a-key")  # auth comes first: a plain 403
        assert "not-a-key" not in wrong_key.json()["message"]


async def test_hostile_faults_at_start_survive_a_reset_and_bad_rates_are_refused() -> None:
    async with simulator(hostile_faults={"echo_credentials": 1.0}) as (_, client):
        await client.post("/_admin/faults", json={"echo_credentials": 0.0})
        assert (await text_task(client)).status_code == 200
        await client.post("/_admin/reset")
        assert (await text_task(client)).status_code == 403
        assert (await client.post("/_admin/faults", json={"wrong_shape": 1.5})).status_code == 400


async def test_classic_fault_draws_are_unchanged_when_hostile_rates_are_0() -> None:
    startup = StartupSettings(faults={"503": 0.5}, seed=99)
    expected = Faults(rates={"503": 0.5}, rng=random.Random(99))
    outcomes = ["503" if expected.request_fault() else "200" for _ in range(16)]
    assert "503" in outcomes and "200" in outcomes
    async with simulator(SimulatorState(startup=startup)) as (_, client):
        await client.post("/_admin/faults", json={"wrong_shape": 0.0, "echo_credentials": 0.0})
        assert [str((await text_task(client)).status_code) for _ in range(16)] == outcomes


def test_cli_refuses_a_hostile_rate_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fault", "wrong_shape=2"]) == 2
    assert "wrong_shape" in capsys.readouterr().err


def test_simulator_process_with_a_hostile_port() -> None:
    sim = SimulatorProcess(hostile_port=0).start()
    try:
        assert sim.hostile_port
        assert httpx.get(sim.url + "/_admin/hostile").json()["url"] == sim.hostile_url
        r = httpx.get(sim.hostile_url + "/redirect-metadata")
        assert r.status_code == 302 and r.headers["location"].startswith("http://169.254.169.254/")
    finally:
        sim.stop()
    with pytest.raises(RuntimeError):
        _ = SimulatorProcess().hostile_url
