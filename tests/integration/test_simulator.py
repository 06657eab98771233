"""The simulator over real HTTP: the seeds' auth, field rules, shapes and error codes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from moderation_devtools.samples import image_bytes, make_image, reencoded
from moderation_devtools.stack import SimulatorProcess
from moderation_simulator.state import DEFAULT_KEYS

pytestmark = pytest.mark.integration


def post(
    sim: SimulatorProcess,
    path: str,
    project: str | None = "visual",
    *,
    key: str | None = None,
    data: dict[str, str] | None = None,
    media: bytes | None = None,
) -> httpx.Response:
    headers = {}
    if project is not None:
        headers["authorization"] = f"token {key or DEFAULT_KEYS[project]}"  # type: ignore[index]
    files = {"media": ("m.png", media, "image/png")} if media is not None else None
    return httpx.post(sim.url + path, headers=headers, data=data or {}, files=files, timeout=30)


def status(body: dict[str, Any]) -> Any:
    return body["status"][0]["status"]


def test_missing_token_scheme_is_400_and_wrong_key_is_403(sim: SimulatorProcess) -> None:
    r = post(sim, "/api/v1/task/sync", None, data={"text_data": "x"})
    assert r.status_code == 400 and r.json() == {
        "return_code": 400,
        "message": "Invalid Auth Method. 'Token' authentication required.",
    }
    r = post(sim, "/api/v1/task/sync", "text", key="wrong", data={"text_data": "x"})
    assert r.status_code == 403 and r.json()["return_code"] == 403


def test_exactly_one_source_and_no_unknown_fields(sim: SimulatorProcess) -> None:
    both = post(
        sim, "/api/v1/task/sync", data={"url": "http://127.0.0.1/x"}, media=image_bytes(make_image(1))
    )
    assert both.status_code == 400 and "exactly one of" in both.json()["message"]
    none = post(sim, "/api/v1/task/sync", data={"metadata": "m"})
    assert none.status_code == 400
    unknown = post(sim, "/api/v1/task/sync", data={"image_url": "http://127.0.0.1/x"})
    assert unknown.status_code == 400 and "unknown field 'image_url'" in unknown.json()["message"]


def test_visual_classification_shape_and_heads_sum_to_one(sim: SimulatorProcess) -> None:
    r = post(sim, "/api/v1/task/sync", media=image_bytes(make_image(4)), data={"metadata": "m-1"})
    body = r.json()
    assert r.status_code == 200 and status(body) == {"code": "0", "message": "SUCCESS"}
    assert body["metadata"] == "m-1"
    response = body["status"][0]["response"]
    assert response["input"]["media"]["width"] == 480 and response["input"]["model"]
    scores = {c["class"]: c["score"] for c in response["output"][0]["classes"]}
    nsfw_head = ("general_nsfw", "general_suggestive", "general_not_nsfw_not_suggestive")
    assert sum(scores[c] for c in nsfw_head) == pytest.approx(1.0)


def test_v2_paths_answer_with_numeric_status_code(sim: SimulatorProcess) -> None:
    body = post(sim, "/api/v2/task/sync", "text", data={"text_data": "hi"}).json()
    assert status(body)["code"] == 200


def test_text_project_rejects_media(sim: SimulatorProcess) -> None:
    assert post(sim, "/api/v1/task/sync", "text", media=image_bytes(make_image(1))).status_code == 400


def test_csam_response_has_hashes_only_on_match(sim: SimulatorProcess) -> None:
    listed = make_image(77)
    sim.add_csam_image(image_bytes(listed))
    clean = post(sim, "/api/v1/task/sync", "csam", media=image_bytes(make_image(78))).json()
    assert "hashes" not in clean["status"][0]["response"]["output"][0]
    hit = post(sim, "/api/v1/task/sync", "csam", media=reencoded(listed)).json()
    hashes = hit["status"][0]["response"]["output"][0]["hashes"]
    assert hashes[0]["hashType"] == "pdq" and hashes[0]["matches"][0]["matchDistance"] <= 31


def test_task_level_errors(sim: SimulatorProcess) -> None:
    tiny = image_bytes(make_image(1, (40, 40)))
    assert status(post(sim, "/api/v1/task/sync", "csam", media=tiny).json())["code"] == "3003"
    corrupt = post(sim, "/api/v1/task/sync", media=b"\x89PNG broken").json()
    assert status(corrupt)["code"] == "3002"
    missing = post(sim, "/api/v1/task/sync", data={"url": f"{sim.url}/media/nope.png"}).json()
    assert status(missing)["code"] == "2001"
    malformed = post(sim, "/api/v1/task/sync", data={"url": "not a url"}).json()
    assert status(malformed)["code"] == "2002"


def test_custom_index_add_query_remove(sim: SimulatorProcess) -> None:
    banned = make_image(55)
    added = post(
        sim, "/api/v2/custom_index/add/sync", "index", media=image_bytes(banned), data={"metadata": "case 1"}
    ).json()
    output = added["status"][0]["response"]["output"]
    assert output["status"] == "Success" and len(output["shaHash"]) == 64
    query = post(sim, "/api/v2/custom_index/query/sync", "index", media=reencoded(banned)).json()
    matches = query["response"]["output"]["matches"]
    assert (
        len(matches) == 1
        and matches[0]["metadata"] == "case 1"
        and 0.9 <= matches[0]["similarity_score"] <= 1
    )
    unrelated = post(
        sim, "/api/v2/custom_index/query/sync", "index", media=image_bytes(make_image(56))
    ).json()
    assert unrelated["response"]["output"]["matches"] == []
    removed = post(sim, "/api/v2/custom_index/remove/sync", "index", media=image_bytes(banned)).json()
    assert removed["response"]["output"]["status"] == "Success"
    assert removed["response"]["output"]["id"] == matches[0]["id"]
    again = post(sim, "/api/v2/custom_index/query/sync", "index", media=reencoded(banned)).json()
    assert again["response"]["output"]["matches"] == []


def test_index_key_is_its_own_project(sim: SimulatorProcess) -> None:
    r = post(sim, "/api/v2/custom_index/query/sync", "visual", media=image_bytes(make_image(1)))
    assert r.status_code == 403
