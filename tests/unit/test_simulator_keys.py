"""The simulator's ``/_admin/keys``: a key rotation at runtime. The named projects accept only the
keys given from then on (a list lets old and new overlap), the others keep theirs, and a reset
returns to the command line's keys; keys are never echoed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp.test_utils import TestServer

from moderation_simulator.app import build_app
from moderation_simulator.state import DEFAULT_HUAWEI_TOKEN, DEFAULT_KEYS

HUAWEI_SEARCH = "/v1/proj/moderation/image/search"


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    server = TestServer(build_app())
    await server.start_server()
    try:
        async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10) as client:
            yield client
    finally:
        await server.close()


async def accepted(client: httpx.AsyncClient, key: str) -> bool:
    """Whether Hive takes ``key`` (403: a key of no project; a text task sent with another project's
    key is refused for what it is, not for the key)."""
    answer = await client.post(
        "/api/v1/task/sync", data={"text_data": "hello"}, headers={"authorization": f"token {key}"}
    )
    return answer.status_code != 403


async def huawei_code(client: httpx.AsyncClient, token: str) -> str | None:
    answer = await client.post(HUAWEI_SEARCH, json={"file": ""}, headers={"X-Auth-Token": token})
    code: str | None = answer.json().get("error_code")
    return code


async def test_a_rotation_refuses_the_old_key_and_accepts_the_new(sim: httpx.AsyncClient) -> None:
    old = DEFAULT_KEYS["text"]
    assert await accepted(sim, old)
    overlap = await sim.post("/_admin/keys", json={"text": [old, "text-key-2"]})
    assert overlap.json()["text"] == 2 and "text-key-2" not in overlap.text
    assert await accepted(sim, old) and await accepted(sim, "text-key-2")
    await sim.post("/_admin/keys", json={"text": "text-key-2", "huawei": ["huawei-token-2"]})
    assert not await accepted(sim, old)
    assert await accepted(sim, "text-key-2")
    assert await accepted(sim, DEFAULT_KEYS["visual"])  # other projects keep theirs
    assert await huawei_code(sim, DEFAULT_HUAWEI_TOKEN) == "IS.0004"
    assert await huawei_code(sim, "huawei-token-2") != "IS.0004"
    counts = (await sim.get("/_admin/keys")).json()
    assert counts["text"] == 1 and counts["huawei"] == 1 and counts["visual"] == 1
    await sim.post("/_admin/reset")
    assert await accepted(sim, old) and not await accepted(sim, "text-key-2")
    assert await huawei_code(sim, DEFAULT_HUAWEI_TOKEN) != "IS.0004"


@pytest.mark.parametrize(
    "body",
    [
        {"nope": "k"},  # no such project
        {"text": []},
        {"text": ""},
        {"text": ["has space"]},
        {"text": ["line\nbreak"]},
        {"text": [1]},
        {"text": "shared-1", "visual": "shared-1"},  # one key, two projects
        {"text": DEFAULT_KEYS["visual"]},  # the visual project's own key
    ],
)
async def test_a_bad_request_changes_nothing(sim: httpx.AsyncClient, body: dict[str, object]) -> None:
    answer = await sim.post("/_admin/keys", json=body)
    assert answer.status_code == 400
    assert await accepted(sim, DEFAULT_KEYS["text"])
    assert await accepted(sim, DEFAULT_KEYS["visual"])
