"""Hive endpoints: task API sync/async (+ GET for polling) and the custom index, as in the seeds."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from moderation_simulator import pdq
from moderation_simulator.common import (
    FETCH_KEY,
    STATE_KEY,
    FetchFailed,
    allowed_url,
    delay,
    fault_gate,
    fetch,
    now_iso,
    state_of,
)
from moderation_simulator.media import Decoded, decode
from moderation_simulator.state import MODELS, Project, SimulatorState

__all__ = ["routes"]

log = logging.getLogger("moderation_simulator.hive")

TASK_KINDS = ("visual", "text", "csam", "csam_combined")
TASK_SOURCES = ("media", "url", "text_data")
TASK_FIELDS = {"media", "url", "text_data", "callback_url", "metadata", "options"}
INDEX_FIELDS = {"media", "url", "metadata", "callback_url"}
MIN_CSAM_SIDE = 50
INDEX_FORMATS = {"JPEG", "PNG", "WEBP"}
STATUS_MESSAGES = {
    500: "Internal Server Error - We had a problem with our server. Try again later.",
    502: "Bad Gateway - Try again later.",
    503: "Service Unavailable - We're temporarily offline for maintenance. Please try again later.",
    504: "Gateway Timeout - We're not able to fulfill your request at this time. Please try again later.",
}
TASKS_BACKGROUND = web.AppKey("hive_background", set[asyncio.Task[None]])


class TaskFailure(Exception):
    """A task-level error: a non-zero ``status.code`` (2xxx download, 3xxx media) in the body."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"return_code": status, "message": message}, status=status, headers=headers)


def _throttled(wait: float) -> web.Response:
    return error(
        429,
        "Too Many Requests - You've made too many requests to the API, please try again in a few minutes.",
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _failed(status: int) -> web.Response:
    return error(status, STATUS_MESSAGES.get(status, "Server error"))


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated request: who asked, for what, with which content."""

    project: Project
    key: str
    source: str  # media, url or text_data
    fields: dict[str, Any]
    data: bytes | None
    numeric_status: bool


async def _admit(
    request: web.Request,
    kinds: tuple[str, ...],
    allowed: set[str],
    sources: tuple[str, ...],
    *,
    callback: bool,
) -> Submission | web.Response:
    state = state_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token" or not key.strip():
        return error(400, "Invalid Auth Method. 'Token' authentication required.")
    key = key.strip()
    project = state.projects.get(key)
    if project is None or project.kind not in kinds:
        return error(403, "Unauthorized - Your API key is wrong.")
    refused = await fault_gate(state, key, throttled=_throttled, failed=_failed)
    if refused is not None:
        return refused
    try:
        form = await request.post()
    except ValueError as exc:
        return error(400, f"Bad Request - cannot parse form data: {exc}")
    fields: dict[str, Any] = {}
    for name, value in form.items():
        if name not in allowed:
            return error(400, f"Bad Request - unknown field '{name}'")
        if name in fields:
            return error(400, f"Bad Request - field '{name}' given more than once")
        fields[name] = value
    present = [c for c in sources if fields.get(c) not in ("", None)]
    if len(present) != 1:
        listed = ", ".join(f"'{c}'" for c in sources)
        return error(400, f"Bad Request - exactly one of {listed} is required, got {len(present)}")
    if callback and not fields.get("callback_url"):
        return error(400, "Bad Request - 'callback_url' is required for async requests")
    if not callback and "callback_url" in fields:
        return error(400, "Bad Request - 'callback_url' is only accepted by the async endpoints")
    if project.kind == "text" and present[0] != "text_data":
        return error(400, "Bad Request - this project moderates text: send 'text_data'")
    if project.kind != "text" and present[0] == "text_data":
        return error(400, "Bad Request - this project moderates media: send 'media' or 'url'")
    if not state.charge(project):
        return error(405, "Insufficient account balance.")
    source = present[0]
    data: bytes | None = None
    if source == "media":
        part = fields["media"]
        if not isinstance(part, web.FileField):
            return error(400, "Bad Request - 'media' must be sent as a file")
        data = part.file.read()
    return Submission(project, key, source, fields, data, request.path.startswith("/api/v2/"))


def _media_info(decoded: Decoded, sub: Submission) -> dict[str, Any]:
    part = sub.fields.get("media")
    return {
        "url": sub.fields.get("url") if sub.source == "url" else None,
        "filename": part.filename if isinstance(part, web.FileField) else None,
        "type": decoded.kind,
        "mimetype": decoded.mimetype,
        "width": decoded.width,
        "height": decoded.height,
        "num_frames": decoded.num_frames,
        "duration": decoded.duration,
    }


def task_body(
    project: Project,
    output: Any,
    media: dict[str, Any] | None,
    metadata: Any,
    *,
    numeric_status: bool,
    task_id: str | None = None,
    code: int = 0,
    message: str = "SUCCESS",
    extra_input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid1())
    model, model_type = MODELS[project.kind]
    status_code: int | str = (200 if code == 0 else code) if numeric_status else str(code)
    return {
        "id": task_id,
        "code": 200,
        "project_id": project.project_id,
        "user_id": project.user_id,
        "created_on": now_iso(),
        "status": [
            {
                "status": {"code": status_code, "message": message},
                "response": {
                    "input": {
                        "id": task_id,
                        "user_id": project.user_id,
                        "project_id": project.project_id,
                        "charge": "0.00100",
                        "model": model,
                        "model_version": 1,
                        "model_type": model_type,
                        "created_on": now_iso(),
                        "media": media or {"mimetype": None},
                        **(extra_input or {}),
                    },
                    "output": output,
                },
            }
        ],
        "from_cache": False,
        "metadata": metadata,
    }


async def _content(request_app: web.Application, sub: Submission) -> bytes:
    if sub.data is not None:
        return sub.data
    try:
        return await fetch(request_app, str(sub.fields["url"]))
    except FetchFailed as exc:
        raise TaskFailure(exc.code, exc.message) from None


def _decode(data: bytes) -> Decoded:
    try:
        return decode(data)
    except pdq.CorruptMedia as exc:
        raise TaskFailure(3002, f"Unsupported or corrupt media: {exc}") from None


async def run_task(app: web.Application, sub: Submission, task_id: str) -> dict[str, Any]:
    """The body the task API answers (sync) or posts to the callback (async)."""
    state = app[STATE_KEY]
    metadata = sub.fields.get("metadata")
    project = sub.project
    try:
        if project.kind == "text":
            text = str(sub.fields["text_data"])
            output = [
                {
                    "time": 0,
                    "classes": [{"class": c, "score": s} for c, s in state.text_scores(text).items()],
                    "start_char_index": 0,
                    "end_char_index": len(text),
                }
            ]
            return task_body(
                project,
                output,
                None,
                metadata,
                numeric_status=sub.numeric_status,
                task_id=task_id,
                extra_input={"text": json.dumps(text), "hash": hashlib.md5(text.encode()).hexdigest()},
            )
        data = await _content(app, sub)
        decoded = _decode(data)
        if project.kind in ("csam", "csam_combined"):
            output = _csam_output(state, data, decoded, combined=project.kind == "csam_combined")
        else:
            output = [
                {
                    "time": t,
                    "classes": [
                        {"class": c, "score": s}
                        for c, s in state.visual_scores(_frame_key(data, t, decoded), f).items()
                    ],
                }
                for t, f in decoded.frames
            ]
        return task_body(
            project,
            output,
            _media_info(decoded, sub),
            metadata,
            numeric_status=sub.numeric_status,
            task_id=task_id,
        )
    except TaskFailure as failure:
        return task_body(
            project,
            [],
            None,
            metadata,
            numeric_status=sub.numeric_status,
            task_id=task_id,
            code=failure.code,
            message=failure.message,
        )


def _frame_key(data: bytes, t: float, decoded: Decoded) -> bytes:
    return data if decoded.kind == "photo" else data + f"#{t}".encode()


def _csam_output(
    state: SimulatorState, data: bytes, decoded: Decoded, *, combined: bool
) -> list[dict[str, Any]]:
    if min(decoded.width, decoded.height) < MIN_CSAM_SIDE:
        raise TaskFailure(3003, f"Image too small for hash matching: minimum {MIN_CSAM_SIDE}x{MIN_CSAM_SIDE}")
    md5 = hashlib.md5(data).hexdigest()
    result: dict[str, Any] = {
        "time": 0,
        "file": {"fileType": "video" if decoded.kind == "video" else "image", "md5": md5},
    }
    hashes: list[dict[str, Any]] = []
    if decoded.kind == "video":
        if md5 in state.csam_md5:
            hashes.append(_hash_entry("md5", 0))
        matches = state.csam_frames(decoded.frames)
        if matches:
            entry = _hash_entry("videoSaferhashv0", min(d for _, d in matches))
            entry["matches"][0]["scenes"] = _scenes([t for t, _ in matches], decoded.duration)
            hashes.append(entry)
    else:
        matches = state.csam_frames(decoded.frames)
        if matches:
            hashes.append(_hash_entry("pdq", min(d for _, d in matches)))
    if hashes:
        result["hashes"] = hashes
    elif combined:
        first = decoded.frames[0][1]
        result["classes"] = [{"class": c, "score": s} for c, s in state.csam_classes(data, first).items()]
    return [result]


def _hash_entry(hash_type: str, distance: int) -> dict[str, Any]:
    return {
        "hashType": hash_type,
        "matchTypes": ["CSAM"],
        "matches": [{"matchDistance": distance, "sourceId": "thorn-sim", "classifications": ["CSAM"]}],
    }


def _scenes(times: list[float], duration: float, step: float = 1.0) -> list[dict[str, float]]:
    """Consecutive matching sample instants merge into one scene ending one step after its last."""
    scenes: list[dict[str, float]] = []
    for t in sorted(times):
        if scenes and t - scenes[-1]["last"] <= step + 1e-6:
            scenes[-1]["last"] = t
        else:
            scenes.append({"first": t, "last": t})
    return [
        {"startTimestamp": s["first"], "endTimestamp": min(s["last"] + step, duration or s["last"] + step)}
        for s in scenes
    ]


# --- task endpoints ---------------------------------------------------------------------------


async def task_sync(request: web.Request) -> web.Response:
    state = state_of(request)
    state.count("task_sync")
    sub = await _admit(request, TASK_KINDS, TASK_FIELDS, TASK_SOURCES, callback=False)
    if isinstance(sub, web.Response):
        return sub
    await delay(state)
    return web.json_response(await run_task(request.app, sub, str(uuid.uuid1())))


async def task_async(request: web.Request) -> web.Response:
    state = state_of(request)
    state.count("task_async")
    sub = await _admit(request, TASK_KINDS, TASK_FIELDS, TASK_SOURCES, callback=True)
    if isinstance(sub, web.Response):
        return sub
    task_id = str(uuid.uuid1())
    state.new_task(task_id, sub.project)
    _background(request.app, _finish(request.app, sub, task_id, run_task))
    ack: dict[str, Any] = {
        "id": task_id,
        "message": "We received your task.",
        "project_id": sub.project.project_id,
        "user_id": sub.project.user_id,
        "task_id": task_id,
        "upload_history_id": str(uuid.uuid4()),
        "callback_url": sub.fields["callback_url"],
        "queue_priority": 3,
        "task_priority": 3,
    }
    if sub.source == "url":
        ack["image_url"] = sub.fields["url"]
    return web.json_response(ack)


async def task_get(request: web.Request) -> web.Response:
    state = state_of(request)
    state.count("task_get")
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "token" or not key.strip():
        return error(400, "Invalid Auth Method. 'Token' authentication required.")
    project = state.projects.get(key.strip())
    task_id = request.match_info["task_id"]
    task = state.tasks.get(task_id)
    if project is None:
        return error(403, "Unauthorized - Your API key is wrong.")
    if task is None or task.project != project:
        return error(404, "Not Found - no such task")
    if task.body is None:
        return web.json_response(
            {"id": task_id, "task_id": task_id, "message": "Task is still processing."}, status=202
        )
    return web.json_response(task.body)


def _background(app: web.Application, coro: Any) -> None:
    job = asyncio.get_running_loop().create_task(coro)
    app[TASKS_BACKGROUND].add(job)
    job.add_done_callback(app[TASKS_BACKGROUND].discard)


async def _finish(app: web.Application, sub: Submission, task_id: str, work: Any) -> None:
    state = app[STATE_KEY]
    await delay(state)
    body = await work(app, sub, task_id)
    task = state.tasks.get(task_id)
    if task is not None:
        task.body = body
    url = str(sub.fields["callback_url"])
    if state.faults.hit("callback_drop") or not allowed_url(app, url):
        return
    if await _post_callback(app, url, body) and state.faults.hit("resend"):
        await _post_callback(
            app, url, {**body, "resent_on": now_iso(), "resent_by": "auto", "from_cache": True}
        )


async def _post_callback(app: web.Application, url: str, body: dict[str, Any], attempts: int = 4) -> bool:
    state = app[STATE_KEY]
    for attempt in range(attempts):
        try:
            resp = await app[FETCH_KEY].post(url, json=body, timeout=10.0)
            if resp.status_code < 300:
                state.count("callbacks_sent")
                return True
        except Exception as exc:
            log.debug("callback to %s failed: %s", url, exc)
        await asyncio.sleep(0.2 * 2**attempt)
    state.count("callbacks_failed")
    return False


# --- custom index ------------------------------------------------------------------------------


async def _index_work(app: web.Application, sub: Submission, task_id: str, op: str) -> dict[str, Any]:
    """The sync body of one custom-index operation (also the async callback's body)."""
    state = app[STATE_KEY]
    project = sub.project
    status = {"code": "0", "message": "SUCCESS"}
    data = await _content(app, sub)
    decoded = _decode(data)
    if decoded.kind != "photo" or decoded.format not in INDEX_FORMATS:
        raise TaskFailure(
            3001, f"Unsupported media for the custom index: {decoded.mimetype} (jpg, png, webp)"
        )
    image = decoded.frames[0][1]
    if op == "add":
        url = sub.fields.get("url") if sub.source == "url" else None
        entry = state.index_add(data, image, sub.fields.get("metadata"), url)
        return {
            "id": task_id,
            "code": 200,
            "project_id": project.project_id,
            "user_id": project.user_id,
            "created_on": now_iso(),
            "status": [
                {
                    "status": status,
                    "response": {
                        "input": {"id": task_id, "media": {"url": url}},
                        "output": {
                            "status": "Success",
                            "shaHash": entry.sha256,
                            "id": entry.id,
                            "message": "Image successfully added to the index",
                        },
                    },
                }
            ],
            "from_cache": False,
            "metadata": sub.fields.get("metadata"),
        }
    if op == "query":
        matches = [
            {"url": e.url, "id": e.id, "similarity_score": score, "metadata": e.metadata}
            for e, score in state.index_query(image)
        ]
        return {
            "id": task_id,
            "task_id": task_id,
            "project_id": project.project_id,
            "status": status,
            "response": {"input": {"id": task_id}, "output": {"matches": matches}},
        }
    removed = state.index_remove(data, image)
    output: dict[str, Any] = (
        {
            "status": "Success",
            "id": removed.id,
            "shaHash": removed.sha256,
            "message": "Image successfully removed from the index",
            "project_id": project.project_id,
        }
        if removed
        else {
            "status": "Failure",
            "message": "Image not found in the index",
            "project_id": project.project_id,
        }
    )
    return {"id": task_id, "status": status, "response": {"input": {"id": task_id}, "output": output}}


async def _index_or_error(app: web.Application, sub: Submission, task_id: str, op: str) -> dict[str, Any]:
    try:
        return await _index_work(app, sub, task_id, op)
    except TaskFailure as failure:
        return {
            "id": task_id,
            "status": {"code": str(failure.code), "message": failure.message},
            "response": {"input": {"id": task_id}, "output": {}},
        }


async def index_endpoint(request: web.Request) -> web.Response:
    op, mode = request.match_info["op"], request.match_info["mode"]
    state = state_of(request)
    state.count(f"index_{op}" + ("_async" if mode == "async" else ""))
    allowed = INDEX_FIELDS if op == "add" else INDEX_FIELDS - {"metadata"}
    sub = await _admit(request, ("index",), allowed, ("media", "url"), callback=mode == "async")
    if isinstance(sub, web.Response):
        return sub
    task_id = str(uuid.uuid1())
    if mode == "sync":
        await delay(state)
        try:
            return web.json_response(await _index_work(request.app, sub, task_id, op))
        except TaskFailure as failure:
            return error(400, f"Bad Request - {failure.message}")
    state.new_task(task_id, sub.project)
    _background(request.app, _finish(request.app, sub, task_id, functools.partial(_index_or_error, op=op)))
    return web.json_response(
        {
            "id": task_id,
            "task_id": task_id,
            "message": "We received your task.",
            "project_id": sub.project.project_id,
            "callback_url": sub.fields["callback_url"],
        }
    )


def routes(app: web.Application) -> None:
    app[TASKS_BACKGROUND] = set()
    for version in ("v1", "v2"):
        app.router.add_post(f"/api/{version}/task/sync", task_sync)
        app.router.add_post(f"/api/{version}/task/async", task_async)
        app.router.add_get(f"/api/{version}/task/{{task_id}}", task_get)
    app.router.add_post("/api/v2/custom_index/{op:add|query|remove}/{mode:sync|async}", index_endpoint)
