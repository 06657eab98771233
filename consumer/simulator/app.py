"""The provider simulator's HTTP surface (aiohttp): Hive task and custom index endpoints, plus
``/_admin`` hooks for tests and the demo and ``/media`` hosting for URL-based uploads."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from PIL import Image

from . import pdq
from .state import MODELS, Project, ScoreOverride, SimulatorState

__all__ = ["build_app"]

STATE_KEY = web.AppKey("state", SimulatorState)
FETCH_KEY = web.AppKey("fetch", httpx.AsyncClient)
REMOTE_KEY = web.AppKey("allow_remote", bool)

TASK_FIELDS = {"media", "url", "text_data", "callback_url", "metadata", "options"}
INDEX_FIELDS = {"media", "url", "metadata", "callback_url"}
MIN_CSAM_SIDE = 50
MAX_FETCH_BYTES = 50_000_000


class TaskFailure(Exception):
    """A task-level error: HTTP 200 with a non-zero ``status.code`` (2xxx download, 3xxx media)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"return_code": status, "message": message}, status=status)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _authorize(request: web.Request, kinds: tuple[str, ...]) -> Project | web.Response:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token" or not key.strip():
        return _error(400, "Invalid Auth Method. 'Token' authentication required.")
    project = request.app[STATE_KEY].projects.get(key.strip())
    if project is None or project.kind not in kinds:
        return _error(403, "Unauthorized - Your API key is wrong.")
    return project


async def _form(request: web.Request, allowed: set[str]) -> dict[str, Any] | web.Response:
    try:
        form = await request.post()
    except ValueError as exc:
        return _error(400, f"Bad Request - cannot parse form data: {exc}")
    fields: dict[str, Any] = {}
    for name, value in form.items():
        if name not in allowed:
            return _error(400, f"Bad Request - unknown field '{name}'")
        if name in fields:
            return _error(400, f"Bad Request - field '{name}' given more than once")
        fields[name] = value
    return fields


def _one_source(fields: dict[str, Any], choices: tuple[str, ...]) -> str | web.Response:
    present = [c for c in choices if c in fields and fields[c] not in ("", None)]
    if len(present) != 1:
        listed = ", ".join(f"'{c}'" for c in choices)
        return _error(400, f"Bad Request - exactly one of {listed} is required, got {len(present)}")
    return present[0]


async def _media_bytes(
    request: web.Request, fields: dict[str, Any], source: str
) -> tuple[bytes, dict[str, Any]]:
    if source == "media":
        part = fields["media"]
        if not isinstance(part, web.FileField):
            raise TaskFailure(3001, "media must be sent as a file")
        return part.file.read(), {"filename": part.filename, "url": None}
    url = str(fields["url"])
    return await _fetch(request.app, url), {"url": url, "filename": None}


async def _fetch(app: web.Application, url: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TaskFailure(2002, f"Malformed media URL: {url!r}")
    if not app[REMOTE_KEY] and not _loopback(parts.hostname):
        raise TaskFailure(2003, "Media URL host is not reachable from the simulator (loopback only)")
    try:
        resp = await app[FETCH_KEY].get(url)
    except httpx.HTTPError as exc:
        raise TaskFailure(2001, f"Failed to download media: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise TaskFailure(2001, f"Failed to download media: HTTP {resp.status_code}")
    if len(resp.content) > MAX_FETCH_BYTES:
        raise TaskFailure(3004, "Media too large")
    return resp.content


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open(data: bytes) -> Image.Image:
    try:
        return pdq.open_image(data)
    except pdq.CorruptMedia as exc:
        raise TaskFailure(3002, f"Unsupported or corrupt media: {exc}") from None


def _media_info(image: Image.Image, origin: dict[str, Any]) -> dict[str, Any]:
    fmt = (image.format or "PNG").lower()
    return {
        **origin,
        "type": "video" if getattr(image, "is_animated", False) else "photo",
        "mimetype": Image.MIME.get(image.format or "", f"image/{fmt}"),
        "width": image.width,
        "height": image.height,
        "num_frames": getattr(image, "n_frames", 1),
    }


def _task_body(
    project: Project,
    output: Any,
    media: dict[str, Any] | None,
    metadata: Any,
    *,
    numeric_status: bool,
    code: int = 0,
    message: str = "SUCCESS",
    extra_input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    task_id = str(uuid.uuid1())
    model, model_type = MODELS[project.kind]
    status_code: int | str = (200 if code == 0 else code) if numeric_status else str(code)
    return {
        "id": task_id,
        "code": 200,
        "project_id": project.project_id,
        "user_id": project.user_id,
        "created_on": _now_iso(),
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
                        "created_on": _now_iso(),
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


async def _delay(request: web.Request, endpoint: str) -> None:
    state = request.app[STATE_KEY]
    state.count(endpoint)
    wait = state.latency.sample_s()
    if wait > 0:
        await asyncio.sleep(wait)


async def task_sync(request: web.Request) -> web.Response:
    await _delay(request, "task_sync")
    project = _authorize(request, ("visual", "text", "csam"))
    if isinstance(project, web.Response):
        return project
    fields = await _form(request, TASK_FIELDS)
    if isinstance(fields, web.Response):
        return fields
    source = _one_source(fields, ("media", "url", "text_data"))
    if isinstance(source, web.Response):
        return source
    numeric = request.path.startswith("/api/v2/")
    metadata = fields.get("metadata")
    state = request.app[STATE_KEY]
    try:
        if project.kind == "text":
            if source != "text_data":
                return _error(400, "Bad Request - this project moderates text: send 'text_data'")
            text = str(fields["text_data"])
            output = [
                {
                    "time": 0,
                    "classes": [{"class": c, "score": s} for c, s in state.text_scores(text).items()],
                    "start_char_index": 0,
                    "end_char_index": len(text),
                }
            ]
            body = _task_body(
                project,
                output,
                None,
                metadata,
                numeric_status=numeric,
                extra_input={"text": json.dumps(text), "hash": hashlib.md5(text.encode()).hexdigest()},
            )
            return web.json_response(body)
        if source == "text_data":
            return _error(400, "Bad Request - this project moderates media: send 'media' or 'url'")
        data, origin = await _media_bytes(request, fields, source)
        image = _open(data)
        media = _media_info(image, origin)
        if project.kind == "csam":
            output = _csam_output(state, data, image)
        else:
            frames = pdq.decode_frames(data)
            output = [
                {
                    "time": t,
                    "classes": [
                        {"class": c, "score": s}
                        for c, s in state.visual_scores(
                            data if len(frames) == 1 else _frame_key(data, t), f
                        ).items()
                    ],
                }
                for t, f in frames
            ]
        return web.json_response(_task_body(project, output, media, metadata, numeric_status=numeric))
    except TaskFailure as failure:
        body = _task_body(
            project, [], None, metadata, numeric_status=numeric, code=failure.code, message=failure.message
        )
        return web.json_response(body)


def _frame_key(data: bytes, t: float) -> bytes:
    return data + f"#{t}".encode()


def _csam_output(state: SimulatorState, data: bytes, image: Image.Image) -> list[dict[str, Any]]:
    if min(image.width, image.height) < MIN_CSAM_SIDE:
        raise TaskFailure(3003, f"Image too small for hash matching: minimum {MIN_CSAM_SIDE}x{MIN_CSAM_SIDE}")
    result: dict[str, Any] = {
        "time": 0,
        "file": {"fileType": "image", "md5": hashlib.md5(data).hexdigest()},
    }
    distance = state.csam_match(image.convert("RGB"))
    if distance is not None:
        result["hashes"] = [
            {
                "hashType": "pdq",
                "matchTypes": ["CSAM"],
                "matches": [{"matchDistance": distance, "sourceId": "thorn", "classifications": ["CSAM"]}],
            }
        ]
    return [result]


async def index_sync(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    await _delay(request, f"index_{op}")
    project = _authorize(request, ("index",))
    if isinstance(project, web.Response):
        return project
    allowed = INDEX_FIELDS if op == "add" else INDEX_FIELDS - {"metadata"}
    fields = await _form(request, allowed)
    if isinstance(fields, web.Response):
        return fields
    source = _one_source(fields, ("media", "url"))
    if isinstance(source, web.Response):
        return source
    state = request.app[STATE_KEY]
    try:
        data, origin = await _media_bytes(request, fields, source)
        image = _open(data).convert("RGB")
    except TaskFailure as failure:
        return _error(400, f"Bad Request - {failure.message}")
    task_id = str(uuid.uuid1())
    status = {"code": "0", "message": "SUCCESS"}
    if op == "add":
        entry = state.index_add(data, image, fields.get("metadata"), origin.get("url"))
        return web.json_response(
            {
                "id": task_id,
                "code": 200,
                "project_id": project.project_id,
                "user_id": project.user_id,
                "created_on": _now_iso(),
                "status": [
                    {
                        "status": status,
                        "response": {
                            "input": {"id": task_id, "media": origin},
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
                "metadata": fields.get("metadata"),
            }
        )
    if op == "query":
        matches = [
            {"url": e.url, "id": e.id, "similarity_score": score, "metadata": e.metadata}
            for e, score in state.index_query(image)
        ]
        return web.json_response(
            {
                "task_id": task_id,
                "project_id": project.project_id,
                "status": status,
                "response": {"input": {"id": task_id, "media": origin}, "output": {"matches": matches}},
            }
        )
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
    return web.json_response({"status": status, "response": {"input": {"id": task_id}, "output": output}})


# --- admin and media hosting ---------------------------------------------------------------


async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"ok": True})


async def admin_csam_hashes(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE_KEY]
    try:
        for h in body.get("hashes", []):
            state.add_csam_hash(pdq.from_hex(h))
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response({"count": len(state.csam_hashes)})


async def admin_csam_media(request: web.Request) -> web.Response:
    try:
        image = pdq.open_image(await request.read())
    except pdq.CorruptMedia as exc:
        return _error(400, str(exc))
    h = pdq.hash_image(image)
    request.app[STATE_KEY].add_csam_hash(h.value)
    return web.json_response({"hash": pdq.to_hex(h.value), "quality": h.quality})


async def admin_scores(request: web.Request) -> web.Response:
    """Force class scores for content: ``{"scores": {...}, "media_b64" | "sha256" | "text": ...}``."""
    body = await request.json()
    scores = body.get("scores")
    if not isinstance(scores, dict):
        return _error(400, "scores must be an object of class -> score")
    override = ScoreOverride(
        scores={str(k): float(v) for k, v in scores.items()}, sha256=body.get("sha256"), text=body.get("text")
    )
    if "media_b64" in body:
        data = base64.b64decode(body["media_b64"])
        try:
            image = pdq.open_image(data)
        except pdq.CorruptMedia as exc:
            return _error(400, str(exc))
        override.sha256 = hashlib.sha256(data).hexdigest()
        override.hashes = [pdq.hash_image(image)]
    request.app[STATE_KEY].overrides.append(override)
    return web.json_response({"overrides": len(request.app[STATE_KEY].overrides)})


async def admin_latency(request: web.Request) -> web.Response:
    body = await request.json()
    latency = request.app[STATE_KEY].latency
    latency.median_ms = float(body.get("median_ms", latency.median_ms))
    latency.p99_ms = float(body.get("p99_ms", latency.p99_ms))
    return web.json_response({"median_ms": latency.median_ms, "p99_ms": latency.p99_ms})


async def admin_stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response(
        {
            "requests": state.requests,
            "index_size": len(state.index),
            "csam_hashes": len(state.csam_hashes),
            "overrides": len(state.overrides),
            "media": len(state.media),
        }
    )


async def put_media(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    data = await request.read()
    request.app[STATE_KEY].media[name] = (data, request.content_type or "application/octet-stream")
    return web.json_response({"url": f"{request.scheme}://{request.host}/media/{name}"})


async def get_media(request: web.Request) -> web.Response:
    item = request.app[STATE_KEY].media.get(request.match_info["name"])
    if item is None:
        return web.Response(status=404, text="no such media")
    return web.Response(body=item[0], content_type=item[1])


async def health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True, "time": time.time()})


def build_app(state: SimulatorState | None = None, *, allow_remote_fetch: bool = False) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state or SimulatorState()
    app[REMOTE_KEY] = allow_remote_fetch

    async def fetch_client(app: web.Application):  # type: ignore[no-untyped-def]
        app[FETCH_KEY] = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        yield
        await app[FETCH_KEY].aclose()

    app.cleanup_ctx.append(fetch_client)
    for version in ("v1", "v2"):
        app.router.add_post(f"/api/{version}/task/sync", task_sync)
    app.router.add_post("/api/v2/custom_index/{op:add|query|remove}/sync", index_sync)
    app.router.add_post("/_admin/reset", admin_reset)
    app.router.add_post("/_admin/csam/hashes", admin_csam_hashes)
    app.router.add_post("/_admin/csam/media", admin_csam_media)
    app.router.add_post("/_admin/scores", admin_scores)
    app.router.add_post("/_admin/latency", admin_latency)
    app.router.add_get("/_admin/stats", admin_stats)
    app.router.add_put("/media/{name}", put_media)
    app.router.add_get("/media/{name}", get_media)
    app.router.add_get("/healthz", health)
    return app
