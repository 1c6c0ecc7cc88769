"""Daily ``/v1``: rooms (create with name/exp checks, get, cursor list, delete) and meeting
tokens (mint an HS256 JWT signed with the caller's key; validate one)."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from aiohttp import web

from tavus.sim.context import CONTEXT, SimContext
from tavus.sim.http_layer import INVALID_JSON, daily_key, read_json
from tavus.sim.tokens import (
    InvalidTokenError,
    claims_from_properties,
    decode_hs256,
    encode_hs256,
    properties_from_claims,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
MAX_NAME_LENGTH = 128
MAX_LIST_LIMIT = 100
_ALPHANUMERIC = string.ascii_letters + string.digits


def invalid_request(info: str) -> web.Response:
    return web.json_response({"error": "invalid-request-error", "info": info}, status=400)


def not_found(name: str, **extra: Any) -> web.Response:
    body = {"error": "not-found", "info": f"room {name} not found", **extra}
    return web.json_response(body, status=404)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    body = await read_json(request)
    if body is INVALID_JSON:
        return web.json_response(
            {"error": "json-parsing-error", "info": "the request body is not valid JSON"},
            status=400,
        )
    if body is None:
        return {}
    if not isinstance(body, dict):
        return invalid_request("the request body must be a JSON object")
    return body


def _time_error(properties: dict[str, Any], now_s: float) -> str | None:
    """Daily's exp/nbf checks: numbers of seconds, exp in the future."""
    for name in ("exp", "nbf"):
        value = properties.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{name} was '{value}' but should be a number of seconds since the unix epoch"
    exp = properties.get("exp")
    if exp is not None and exp <= now_s:
        return f"exp was '{exp}', which is in the past rather than in the future"
    return None


def _room_error(ctx: SimContext, name: str, body: dict[str, Any], now_s: float) -> str | None:
    if len(name) > MAX_NAME_LENGTH:
        return f"{name} is too long (room names can be at most {MAX_NAME_LENGTH} characters)"
    if not NAME_PATTERN.fullmatch(name):
        return (
            f"{name} contains invalid characters "
            "(room names can contain A-Z, a-z, 0-9, '-', and '_')"
        )
    if body.get("privacy", "public") not in ("public", "private"):
        return "privacy must be 'public' or 'private'"
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        return "properties must be an object"
    return _time_error(properties, now_s)


async def create_room(request: web.Request) -> web.StreamResponse:
    """POST /v1/rooms: 200 with the room; a live duplicate name is a 400 (atomic check+insert)."""
    ctx = request.app[CONTEXT]
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    now_s = ctx.clock()
    name = body.get("name")
    if name is None:
        name = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(20))
    if not isinstance(name, str):
        return invalid_request("name must be a string")
    error = _room_error(ctx, name, body, now_s)
    if error is not None:
        return invalid_request(error)
    # No await between this check and the insert: concurrent creates cannot both win.
    if ctx.state.live_room(name, now_s) is not None:
        return invalid_request(f"a room named {name} already exists")
    properties = dict(body.get("properties", {}))
    room = ctx.state.new_room(name, body.get("privacy", "public"), properties, now_s)
    return web.json_response(room.to_json(ctx.config.daily_domain))


async def get_room(request: web.Request) -> web.StreamResponse:
    """GET /v1/rooms/{name}: expired rooms are absent."""
    ctx = request.app[CONTEXT]
    name = request.match_info["name"]
    room = ctx.state.live_room(name, ctx.clock())
    if room is None:
        return not_found(name)
    return web.json_response(room.to_json(ctx.config.daily_domain))


async def list_rooms(request: web.Request) -> web.StreamResponse:
    """GET /v1/rooms?limit=&starting_after=&ending_before=: newest first, cursors are room ids."""
    ctx = request.app[CONTEXT]
    try:
        limit = int(request.query.get("limit", str(MAX_LIST_LIMIT)))
    except ValueError:
        return invalid_request("limit must be an integer")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        return invalid_request(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    rooms = ctx.state.live_rooms(ctx.clock())
    ids = [room.id for room in rooms]
    after = request.query.get("starting_after")
    before = request.query.get("ending_before")
    if after is not None:
        page = rooms[ids.index(after) + 1 :][:limit] if after in ids else []
    elif before == "OLDEST":
        page = rooms[-limit:]
    elif before is not None:
        earlier = rooms[: ids.index(before)] if before in ids else []
        page = earlier[-limit:]
    else:
        page = rooms[:limit]
    data = [room.to_json(ctx.config.daily_domain) for room in page]
    return web.json_response({"total_count": len(rooms), "data": data})


async def delete_room(request: web.Request) -> web.StreamResponse:
    """DELETE /v1/rooms/{name}: 200 deleted; unknown 404; expired 404 with deleted: true."""
    ctx = request.app[CONTEXT]
    name = request.match_info["name"]
    room = ctx.state.rooms.get(name)
    if room is None:
        return not_found(name)
    del ctx.state.rooms[name]
    if room.is_expired(ctx.clock()):
        return not_found(name, deleted=True)
    return web.json_response({"deleted": True, "name": name})


def _token_error(properties: dict[str, Any], now_s: float) -> str | None:
    user_id = properties.get("user_id")
    if user_id is not None and not (isinstance(user_id, str) and len(user_id) <= 36):
        return "user_id must be a string of at most 36 characters"
    room_name = properties.get("room_name")
    if room_name is not None and not isinstance(room_name, str):
        return "room_name must be a string"
    return _time_error(properties, now_s)


async def create_meeting_token(request: web.Request) -> web.StreamResponse:
    """POST /v1/meeting-tokens {"properties": {...}}: {"token": <HS256 JWT, abbreviated claims>}."""
    ctx = request.app[CONTEXT]
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        return invalid_request("properties must be an object")
    now_s = ctx.clock()
    error = _token_error(properties, now_s)
    if error is not None:
        return invalid_request(error)
    claims = claims_from_properties(properties)
    claims |= {"d": ctx.config.daily_domain_id, "iat": int(now_s)}
    return web.json_response({"token": encode_hs256(claims, daily_key(request))})


async def validate_meeting_token(request: web.Request) -> web.StreamResponse:
    """GET /v1/meeting-tokens/{token}[?ignoreNbf=true]: the properties under their long names."""
    ctx = request.app[CONTEXT]
    try:
        claims = decode_hs256(request.match_info["token"], daily_key(request))
    except InvalidTokenError:
        return invalid_request("token is invalid or belongs to another domain")
    now_s = ctx.clock()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and exp <= now_s:
        return invalid_request("token has expired")
    ignore_nbf = request.query.get("ignoreNbf", "").lower() == "true"
    if isinstance(nbf, int | float) and nbf > now_s and not ignore_nbf:
        return invalid_request("token is not valid yet (nbf)")
    return web.json_response(properties_from_claims(claims))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/rooms", create_room)
    app.router.add_get("/v1/rooms", list_rooms)
    app.router.add_get("/v1/rooms/{name}", get_room)
    app.router.add_delete("/v1/rooms/{name}", delete_room)
    app.router.add_post("/v1/meeting-tokens", create_meeting_token)
    app.router.add_get("/v1/meeting-tokens/{token}", validate_meeting_token)
