"""Huawei Cloud ImageSearch endpoints: search, add, delete, check, modify tags (JSON, X-Auth-Token).

Errors are HTTP 400 with ``{"error_code": "IS.00xx", "error_msg": ...}`` as the seed shows; the codes
where the seed is silent are this simulator's choice (docs/simulator.md lists them).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
from typing import Any

from aiohttp import web
from PIL import Image

from moderation_simulator import pdq
from moderation_simulator.common import FetchFailed, delay, fault_gate, fetch, state_of
from moderation_simulator.media import decode
from moderation_simulator.state import HuaweiImage

__all__ = ["routes"]

FORMATS = {"JPEG", "PNG", "BMP"}
MIN_SIDE, MAX_SIDE = 100, 2048
MAX_TAGS = 10
SEARCH_FIELDS = {"file", "path", "limit", "offset", "tags", "is_crop", "box"}
ADD_FIELDS = {"file", "path", "tags"}


class HuaweiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> web.Response:
        return web.json_response({"error_code": self.code, "error_msg": self.message}, status=self.status)


def _throttled(wait: float) -> web.Response:
    return web.json_response(
        {"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached"},
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _failed(status: int) -> web.Response:
    return web.json_response(
        {"error_code": "IS.0011", "error_msg": f"Service error (HTTP {status})"}, status=status
    )


async def _admit(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """Auth, throttling, faults and the JSON body; raises HuaweiError (or returns a response via it)."""
    state = state_of(request)
    token = request.headers.get("X-Auth-Token", "")
    if not token or not any(hmac.compare_digest(token.encode(), t.encode()) for t in state.huawei_tokens):
        raise HuaweiError("IS.0004", "The token is invalid or has expired.")
    refused = await fault_gate(state, token, throttled=_throttled, failed=_failed)
    if refused is not None:
        raise _Refused(refused)
    if state.faults.hit("is0012"):
        raise HuaweiError("IS.0012", "Request timed out.")
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HuaweiError("IS.0001", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise HuaweiError("IS.0001", "The request body must be a JSON object.")
    unknown = set(body) - allowed
    if unknown:
        raise HuaweiError("IS.0001", f"Unknown parameter: {sorted(unknown)[0]}.")
    await delay(state)
    return body


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__("refused")
        self.response = response


def _library(request: web.Request) -> dict[str, HuaweiImage]:
    key = (request.match_info["project_id"], request.match_info["instance"])
    return state_of(request).libraries.setdefault(key, {})


def _tags(body: dict[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise HuaweiError("IS.0002", f"tags must be an object with at most {MAX_TAGS} entries.")
    return {str(k): str(v) for k, v in tags.items()}


def _image(data: bytes) -> Image.Image:
    try:
        decoded = decode(data)
    except pdq.CorruptMedia:
        raise HuaweiError("IS.0008", "The image cannot be decoded.") from None
    if decoded.kind != "photo" or decoded.format not in FORMATS:
        raise HuaweiError("IS.0008", "Only JPEG, JPG, PNG and BMP images are supported.")
    short, long = sorted((decoded.width, decoded.height))
    if short < MIN_SIDE or long > MAX_SIDE:
        raise HuaweiError(
            "IS.0008",
            f"Image resolution not supported: the narrow side must be at least "
            f"{MIN_SIDE} px and the wide side at most {MAX_SIDE} px.",
        )
    return decoded.frames[0][1]


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise HuaweiError("IS.0008", "file must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HuaweiError("IS.0008", "file is not valid base64.") from None


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    value = body.get(name, default)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise HuaweiError("IS.0002", f"Invalid value of {name}: expected an integer {bound}.")
    return value


def _crop(image: Image.Image, body: dict[str, Any]) -> Image.Image:
    if not body.get("is_crop"):
        return image
    box = body.get("box")
    if not isinstance(box, dict):
        raise HuaweiError("IS.0002", "box is required when is_crop is true.")
    try:
        x, y = int(box.get("x", 0)), int(box.get("y", 0))
        w, h = int(box.get("width", image.width - x)), int(box.get("height", image.height - y))
    except (TypeError, ValueError):
        raise HuaweiError("IS.0002", "box values must be integers.") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > image.width or y + h > image.height:
        raise HuaweiError("IS.0002", "box lies outside the image.")
    return image.crop((x, y, x + w, y + h))


def _handler(allowed: set[str], name: str, work: Any) -> Any:
    async def handle(request: web.Request) -> web.Response:
        state_of(request).count(f"huawei_{name}")
        try:
            body = await _admit(request, allowed)
            return web.json_response(await work(request, body))
        except HuaweiError as exc:
            return exc.response()
        except _Refused as refused:
            return refused.response

    return handle


async def _search(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    limit = _int(body, "limit", 10, 1, 100)
    offset = _int(body, "offset", 0, 0, None)
    tags = _tags(body)
    library = _library(request)
    query: list[pdq.PdqHash] | None = None
    if body.get("file") is not None:
        query = pdq.hash_variants(_crop(_image(_b64(body["file"])), body))
    elif body.get("path"):
        stored = library.get(str(body["path"]))
        if stored is None:
            raise HuaweiError("IS.0010", "The image does not exist in the image library.")
        query = stored.hashes
    elif not tags:
        raise HuaweiError("IS.0003", "Arguments of path can not be null.")
    results: list[dict[str, Any]] = []
    for path, item in library.items():
        if any(item.tags.get(k) != v for k, v in tags.items()):
            continue
        if query is None:
            results.append({"path": path, "sim": 1.0, "tags": item.tags})
            continue
        usable = [q for q in query if q.usable]
        d = min(
            (pdq.distance(h.value, q.value) for h in item.hashes if h.usable for q in usable), default=256
        )
        if d <= pdq.MATCH_DISTANCE:
            results.append({"path": path, "sim": round(1 - d / 256, 5), "tags": item.tags})
    results.sort(key=lambda r: float(r["sim"]), reverse=True)
    return {"count": len(results), "result": results[offset : offset + limit]}


async def _add(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    path = body.get("path")
    if not path:
        raise HuaweiError("IS.0003", "Arguments of path can not be null.")
    tags = _tags(body)
    if body.get("file") is not None:
        data = _b64(body["file"])
    else:
        try:
            data = await fetch(request.app, str(path))
        except FetchFailed as exc:
            raise HuaweiError("IS.0008", f"The image at path cannot be downloaded: {exc.message}") from None
    image = _image(data)
    _library(request)[str(path)] = HuaweiImage([pdq.hash_image(image)], tags)
    return {"result": "success"}


def _existing(request: web.Request, body: dict[str, Any]) -> str:
    path = body.get("path")
    if not path:
        raise HuaweiError("IS.0003", "Arguments of path can not be null.")
    return str(path)


async def _delete(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    if _library(request).pop(_existing(request, body), None) is None:
        raise HuaweiError("IS.0010", "The image does not exist in the image library.")
    return {"result": "success"}


async def _check(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"result": {"exist": _existing(request, body) in _library(request)}}


async def _modify(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    item = _library(request).get(_existing(request, body))
    if item is None:
        raise HuaweiError("IS.0010", "The image does not exist in the image library.")
    item.tags = _tags(body)
    return {"result": "success"}


def routes(app: web.Application) -> None:
    base = "/v1/{project_id}/{instance}/image"
    app.router.add_post(base + "/search", _handler(SEARCH_FIELDS, "search", _search))
    app.router.add_post(base, _handler(ADD_FIELDS, "add", _add))
    app.router.add_delete(base, _handler({"path"}, "delete", _delete))
    app.router.add_post(base + "/check", _handler({"path", "file"}, "check", _check))
    app.router.add_put(base, _handler({"path", "tags"}, "tags", _modify))
