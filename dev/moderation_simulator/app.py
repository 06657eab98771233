"""The provider simulator's HTTP application: Hive and Huawei endpoints, ``/_admin`` hooks for
tests and the demo, ``/media`` hosting for URL-based uploads, and the address of the hostile server
(``GET /_admin/hostile``) when one runs."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from aiohttp import web
from aiohttp.typedefs import Handler

from moderation_simulator import hive, huawei, pdq
from moderation_simulator.common import (
    FETCH_KEY,
    HOSTILE_ANSWER,
    HOSTILE_FAULT_NAMES,
    REMOTE_KEY,
    STATE_KEY,
    state_of,
)
from moderation_simulator.hostile import (
    HostileServer,
    fault_answer,
    hostile_fault_rates,
    set_hostile_fault,
    startup_hostile_faults,
)
from moderation_simulator.media import decode
from moderation_simulator.state import PROJECT_IDS, ProjectKind, ScoreOverride, SimulatorState

__all__ = ["build_app"]

HOSTILE_KEY = web.AppKey("hostile", HostileServer)
HOSTILE_FAULTS_KEY = web.AppKey("hostile_faults", dict[str, float])
PROVIDER_PREFIXES = ("/api/", "/v1/")


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def admin_reset(request: web.Request) -> web.Response:
    state = state_of(request)
    state.reset()
    at_start: dict[str, float] = request.app[HOSTILE_FAULTS_KEY]
    startup_hostile_faults(state.faults, at_start)
    return web.json_response({"ok": True})


async def admin_csam_hashes(request: web.Request) -> web.Response:
    body = await _json(request)
    state = state_of(request)
    try:
        for h in body.get("hashes", []):
            state.add_csam_hash(pdq.from_hex(h))
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response({"count": len(state.csam_hashes)})


async def admin_csam_md5(request: web.Request) -> web.Response:
    body = await _json(request)
    state = state_of(request)
    state.csam_md5.update(str(m).lower() for m in body.get("md5", []))
    return web.json_response({"count": len(state.csam_md5)})


async def admin_csam_media(request: web.Request) -> web.Response:
    """An image adds its PDQ hash to the list; a video adds its MD5."""
    data = await request.read()
    try:
        decoded = decode(data)
    except pdq.CorruptMedia as exc:
        return _bad(str(exc))
    state = state_of(request)
    if decoded.kind == "video":
        md5 = hashlib.md5(data).hexdigest()
        state.csam_md5.add(md5)
        return web.json_response({"md5": md5})
    h = pdq.hash_image(decoded.frames[0][1])
    state.add_csam_hash(h.value)
    return web.json_response({"hash": pdq.to_hex(h.value), "quality": h.quality})


async def admin_scores(request: web.Request) -> web.Response:
    """Force class scores for content: ``{"scores": {...}, "media_b64" | "sha256" | "text": ...}``."""
    body = await _json(request)
    scores = body.get("scores")
    if not isinstance(scores, dict):
        return _bad("scores must be an object of class -> score")
    override = ScoreOverride(
        scores={str(k): float(v) for k, v in scores.items()}, sha256=body.get("sha256"), text=body.get("text")
    )
    if "media_b64" in body:
        try:
            data = base64.b64decode(body["media_b64"], validate=True)
            image = pdq.open_image(data)
        except (binascii.Error, ValueError, pdq.CorruptMedia) as exc:
            return _bad(f"media_b64: {exc}")
        override.sha256 = hashlib.sha256(data).hexdigest()
        override.hashes = [pdq.hash_image(image)]
    state_of(request).overrides.append(override)
    return web.json_response({"overrides": len(state_of(request).overrides)})


async def admin_latency(request: web.Request) -> web.Response:
    body = await _json(request)
    latency = state_of(request).latency
    latency.median_ms = float(body.get("median_ms", latency.median_ms))
    latency.p99_ms = float(body.get("p99_ms", latency.p99_ms))
    return web.json_response({"median_ms": latency.median_ms, "p99_ms": latency.p99_ms})


async def admin_faults(request: web.Request) -> web.Response:
    faults = state_of(request).faults
    if request.method == "POST":
        body = await _json(request)
        try:
            for name, rate in body.items():
                if name == "hang_s":
                    faults.hang_s = float(rate)
                elif name in HOSTILE_FAULT_NAMES:
                    set_hostile_fault(faults, name, float(rate))
                else:
                    faults.set(name, float(rate))
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
    return web.json_response({**faults.snapshot(), **hostile_fault_rates(faults)})


async def admin_keys(request: web.Request) -> web.Response:
    """``POST {"visual": ["key-2"], "huawei": "token-2", …}``: the keys (or Huawei tokens) each named
    project accepts from now on, its others refused (a key rotation; a string is one key, a list
    lets old and new overlap); ``GET``: how many each accepts (never the keys). ``/_admin/reset``
    returns to the command line's keys."""
    state = state_of(request)
    if request.method == "POST":
        body = await _json(request)
        wanted: dict[str, list[str]] = {}
        for project, given in body.items():
            keys = [given] if isinstance(given, str) else given
            if project not in (*PROJECT_IDS, "huawei"):
                return _bad(f"unknown project {project!r} (one of {', '.join(PROJECT_IDS)}, huawei)")
            if not isinstance(keys, list) or not keys or not all(_usable_key(k) for k in keys):
                return _bad(f"{project}: a key or a non-empty list of keys (printable, no spaces)")
            wanted[project] = keys
        hive_keys = [k for project, keys in wanted.items() if project != "huawei" for k in keys]
        kept = [k for k, p in state.projects.items() if p.kind not in wanted]
        if len(set(hive_keys)) != len(hive_keys) or set(hive_keys) & set(kept):
            return _bad("a key may belong to one project only")
        for project, keys in wanted.items():
            if project == "huawei":
                state.huawei_tokens = list(keys)
            else:
                kind: ProjectKind = project  # type: ignore[assignment]  # checked against PROJECT_IDS
                state.set_keys(kind, keys)
    return web.json_response(state.key_counts())


def _usable_key(key: object) -> bool:
    return isinstance(key, str) and bool(key) and key.isprintable() and " " not in key


async def admin_hostile(request: web.Request) -> web.Response:
    hostile = request.app.get(HOSTILE_KEY)
    if hostile is None:
        return web.json_response({"error": "hostile mode is off (start with --hostile-port)"}, status=404)
    return web.json_response({"port": hostile.port, "url": hostile.url})


@web.middleware
async def hostile_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Lets ``fault_gate`` answer a provider call with a hostile fault, which needs the request."""
    if not request.path.startswith(PROVIDER_PREFIXES):
        return await handler(request)
    token = HOSTILE_ANSWER.set(functools.partial(fault_answer, request))
    try:
        return await handler(request)
    finally:
        HOSTILE_ANSWER.reset(token)


async def admin_balance(request: web.Request) -> web.Response:
    body = await _json(request)
    state = state_of(request)
    project = str(body.get("project", ""))
    if project not in {p.kind for p in state.projects.values()}:
        return _bad(f"unknown project {project!r}")
    credits = body.get("credits")
    state.balances[project] = None if credits is None else int(credits)
    return web.json_response({"project": project, "credits": state.balances[project]})


async def admin_rate_limit(request: web.Request) -> web.Response:
    body = await _json(request)
    rps = body.get("rps")
    state_of(request).set_rate_limit(
        None if rps is None else float(rps), None if body.get("burst") is None else float(body["burst"])
    )
    return web.json_response({"rps": rps, "burst": body.get("burst") or rps})


async def admin_stats(request: web.Request) -> web.Response:
    state = state_of(request)
    return web.json_response(
        {
            "requests": state.requests,
            "index_size": len(state.index),
            "csam_hashes": len(state.csam_hashes),
            "csam_md5": len(state.csam_md5),
            "overrides": len(state.overrides),
            "media": len(state.media),
            "tasks": len(state.tasks),
            "pending_tasks": sum(1 for t in state.tasks.values() if t.body is None),
            "huawei_images": sum(len(lib) for lib in state.libraries.values()),
        }
    )


async def put_media(request: web.Request) -> web.Response:
    """``?fail_first=N``: the first N downloads answer 503 (a transient fault to retry through)."""
    name = request.match_info["name"]
    try:
        failures = int(request.query.get("fail_first", "0"))
    except ValueError:
        return _bad("fail_first must be an integer")
    data = await request.read()
    state = state_of(request)
    state.media[name] = (data, request.content_type or "application/octet-stream")
    state.media_failures[name] = max(0, failures)
    return web.json_response({"url": f"{request.scheme}://{request.host}/media/{name}"})


async def get_media(request: web.Request) -> web.Response:
    state, name = state_of(request), request.match_info["name"]
    state.count("media_get")
    item = state.media.get(name)
    if item is None:
        return web.Response(status=404, text="no such media")
    if state.media_failures.get(name, 0) > 0:
        state.media_failures[name] -= 1
        return web.Response(status=503, text="media host briefly unavailable")
    return web.Response(body=item[0], content_type=item[1])


async def health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True, "time": time.time()})


def build_app(
    state: SimulatorState | None = None,
    *,
    allow_remote_fetch: bool = False,
    hostile: HostileServer | None = None,
    hostile_faults_at_start: Mapping[str, float] | None = None,
) -> web.Application:
    """The simulator's application. ``hostile``: the hostile server whose address ``/_admin/hostile``
    reports; ``hostile_faults_at_start``: ``wrong_shape`` / ``echo_credentials`` rates, kept on reset."""
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[hostile_faults])
    app[STATE_KEY] = state or SimulatorState()
    app[REMOTE_KEY] = allow_remote_fetch
    at_start: dict[str, float] = dict(hostile_faults_at_start or {})
    app[HOSTILE_FAULTS_KEY] = at_start
    startup_hostile_faults(app[STATE_KEY].faults, at_start)
    if hostile is not None:
        app[HOSTILE_KEY] = hostile

    async def fetch_client(app: web.Application) -> AsyncIterator[None]:
        app[FETCH_KEY] = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        yield
        jobs = app[hive.TASKS_BACKGROUND]
        for job in tuple(jobs):
            job.cancel()
        await app[FETCH_KEY].aclose()

    app.cleanup_ctx.append(fetch_client)
    hive.routes(app)
    huawei.routes(app)
    app.router.add_post("/_admin/reset", admin_reset)
    app.router.add_post("/_admin/csam/hashes", admin_csam_hashes)
    app.router.add_post("/_admin/csam/md5", admin_csam_md5)
    app.router.add_post("/_admin/csam/media", admin_csam_media)
    app.router.add_post("/_admin/scores", admin_scores)
    app.router.add_post("/_admin/latency", admin_latency)
    app.router.add_route("*", "/_admin/faults", admin_faults)
    app.router.add_get("/_admin/hostile", admin_hostile)
    app.router.add_route("*", "/_admin/keys", admin_keys)
    app.router.add_post("/_admin/balance", admin_balance)
    app.router.add_post("/_admin/rate_limit", admin_rate_limit)
    app.router.add_get("/_admin/stats", admin_stats)
    app.router.add_put("/media/{name}", put_media)
    app.router.add_get("/media/{name}", get_media)
    app.router.add_get("/healthz", health)
    return app
