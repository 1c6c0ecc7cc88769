"""Tavus ``/v2/conversations``: create (with every documented check), get, list, end, delete,
plus the loopback room page that ``conversation_url`` points at."""

from __future__ import annotations

import html
import re
from typing import Any

import structlog
from aiohttp import web

from tavus.sim.context import CONTEXT, TAVUS_ROOM_SECRET, SimContext
from tavus.sim.http_layer import INVALID_JSON, read_json
from tavus.sim.lifecycle import DELETED_REASON, END_ENDPOINT_REASON
from tavus.sim.state import USABLE_REPLICA_STATUSES, Conversation, new_tavus_id
from tavus.sim.tokens import encode_hs256

log = structlog.get_logger(__name__)

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CONCURRENCY_MESSAGE = "User has reached maximum concurrent conversations"
CREDITS_MESSAGE = "The user is out of conversational credits"
_STRING_FIELDS = (
    "replica_id",
    "persona_id",
    "pal_id",
    "face_id",
    "callback_url",
    "conversation_name",
    "conversational_context",
    "custom_greeting",
)
_BOOL_FIELDS = ("audio_only", "test_mode", "require_auth", "enable_dynamic_greeting")
_LIST_FIELDS = ("memory_stores", "document_ids", "document_tags")
_TIMEOUT_PROPERTIES = (
    "max_call_duration",
    "participant_left_timeout",
    "participant_absent_timeout",
)
_RETRIEVAL_STRATEGIES = ("speed", "quality", "balanced")


def bad_request(message: str, *, key: str = "error") -> web.Response:
    return web.json_response({key: message}, status=400)


def invalid_conversation() -> web.Response:
    return bad_request("Invalid conversation_id")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_error(body: dict[str, Any]) -> str | None:
    """The first documented-field type problem, phrased the way a user can fix it."""
    for name in _STRING_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            return f"{name} must be a string"
    for name in _BOOL_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], bool):
            return f"{name} must be a boolean"
    for name in _LIST_FIELDS:
        value = body.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return f"{name} must be a list of strings"
    return _value_error(body)


def _value_error(body: dict[str, Any]) -> str | None:
    strategy = body.get("document_retrieval_strategy")
    if strategy is not None and strategy not in _RETRIEVAL_STRATEGIES:
        return "document_retrieval_strategy must be one of speed, quality, balanced"
    participants = body.get("max_participants")
    if participants is not None and not (_is_int(participants) and participants >= 2):
        return "max_participants must be an integer of at least 2"
    properties = body.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return "properties must be an object"
    for name in _TIMEOUT_PROPERTIES:
        value = properties.get(name)
        if value is not None and not (_is_int(value) and value >= 0):
            return f"properties.{name} must be a non-negative integer (seconds)"
    return None


def _replica_error(ctx: SimContext, replica_id: str) -> str | None:
    replica = ctx.state.replicas.get(replica_id)
    if replica is None:
        return "Invalid replica_uuid"
    status = replica.get("status")
    if status in USABLE_REPLICA_STATUSES:
        return None
    if status == "error":
        return (
            f"Replica {replica_id} failed training and cannot be used: "
            f"{replica.get('error_message') or 'no reason given'}"
        )
    return (
        f"Replica {replica_id} is still training ({replica.get('training_progress')}) "
        "and cannot be used yet"
    )


def _resolve(ctx: SimContext, body: dict[str, Any]) -> tuple[str, str | None] | web.Response:
    """The (replica_id, persona_id) to use, or the 400 Tavus gives."""
    persona_id = body.get("persona_id") or body.get("pal_id")
    replica_id = body.get("replica_id") or body.get("face_id")
    if persona_id is not None:
        persona = ctx.state.personas.get(persona_id)
        if persona is None:
            return bad_request("Invalid persona_id")
        replica_id = replica_id or persona.data.get("default_replica_id")
    if not replica_id:
        return bad_request(
            "replica_id is required: give one, or a persona_id whose persona "
            "has a default_replica_id"
        )
    error = _replica_error(ctx, replica_id)
    if error is not None:
        return bad_request(error)
    return replica_id, persona_id


async def create_conversation(request: web.Request) -> web.StreamResponse:
    """POST /v2/conversations."""
    ctx = request.app[CONTEXT]
    body = await read_json(request)
    if body is None:
        body = {}
    if body is INVALID_JSON or not isinstance(body, dict):
        return bad_request("Request body must be a JSON object")
    error = _field_error(body)
    if error is not None:
        return bad_request(error)
    resolved = _resolve(ctx, body)
    if isinstance(resolved, web.Response):
        return resolved
    replica_id, persona_id = resolved
    is_test = body.get("test_mode") is True
    if not is_test and ctx.faults.is_out_of_credits:
        return web.json_response({"message": CREDITS_MESSAGE}, status=402)
    cap = ctx.faults.concurrency_cap
    if not is_test and cap is not None and ctx.state.active_slots() >= cap:
        return bad_request(CONCURRENCY_MESSAGE, key="message")
    conversation = _new_conversation(ctx, body, replica_id, persona_id, is_test)
    log.info(
        "sim.conversation_created",
        conversation_id=conversation.conversation_id,
        replica_id=replica_id,
        persona_id=persona_id,
        test_mode=is_test,
    )
    return web.json_response(conversation.to_create_json())


def _new_conversation(
    ctx: SimContext, body: dict[str, Any], replica_id: str, persona_id: str | None, is_test: bool
) -> Conversation:
    now_s = ctx.clock()
    conversation_id = new_tavus_id("c")
    conversation = Conversation(
        conversation_id=conversation_id,
        conversation_url=f"{ctx.config.public_base_url}/rooms/{conversation_id}",
        replica_id=replica_id,
        persona_id=persona_id,
        created_at_s=now_s,
        updated_at_s=now_s,
        request=body,
        test_mode=is_test,
        status="ended" if is_test else "active",
    )
    if is_test:
        conversation.ended_at_s = now_s
    if body.get("require_auth") is True:
        claims = {
            "r": conversation_id,
            "iat": int(now_s),
            "exp": int(now_s + conversation.absent_timeout_s),
        }
        conversation.meeting_token = encode_hs256(claims, TAVUS_ROOM_SECRET)
    ctx.state.conversations[conversation_id] = conversation
    return conversation


def _lookup(request: web.Request) -> Conversation | None:
    conversation_id = request.match_info["conversation_id"]
    if not ID_PATTERN.fullmatch(conversation_id):
        return None
    return request.app[CONTEXT].state.live_conversation(conversation_id)


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


async def get_conversation(request: web.Request) -> web.StreamResponse:
    """GET /v2/conversations/{id}[?verbose=true]."""
    conversation = _lookup(request)
    if conversation is None:
        return invalid_conversation()
    verbose = _is_true(request.query.get("verbose"))
    return web.json_response(conversation.to_json(verbose=verbose))


def page_params(request: web.Request) -> tuple[int, int] | web.Response:
    """(limit, page) from the query: limit default 10, page 1-based."""
    try:
        limit = int(request.query.get("limit", "10"))
        page = int(request.query.get("page", "1"))
    except ValueError:
        return bad_request("limit and page must be integers")
    if limit < 1 or page < 1:
        return bad_request("limit and page must be at least 1")
    return limit, page


async def list_conversations(request: web.Request) -> web.StreamResponse:
    """GET /v2/conversations?limit=&page=&status=."""
    ctx = request.app[CONTEXT]
    paging = page_params(request)
    if isinstance(paging, web.Response):
        return paging
    limit, page = paging
    status = request.query.get("status")
    if status is not None and status not in ("active", "ended"):
        return bad_request("status must be active or ended")
    matching = [
        c
        for c in ctx.state.conversations.values()
        if not c.is_deleted and (status is None or c.status == status)
    ]
    matching.reverse()  # newest first: the dict keeps creation order
    chunk = matching[(page - 1) * limit : page * limit]
    return web.json_response({"data": [c.to_json() for c in chunk], "total_count": len(matching)})


async def end_conversation(request: web.Request) -> web.StreamResponse:
    """POST /v2/conversations/{id}/end: 200, idempotent."""
    conversation = _lookup(request)
    if conversation is None:
        return invalid_conversation()
    request.app[CONTEXT].lifecycle.end(conversation, END_ENDPOINT_REASON)
    return web.json_response({})


async def delete_conversation(request: web.Request) -> web.StreamResponse:
    """DELETE /v2/conversations/{id}[?hard=true]: ends it if still active, then 204."""
    conversation = _lookup(request)
    if conversation is None:
        return invalid_conversation()
    request.app[CONTEXT].lifecycle.end(conversation, DELETED_REASON)
    conversation.is_deleted = True
    return web.Response(status=204)


async def room_page(request: web.Request) -> web.StreamResponse:
    """GET /rooms/{id}: the tiny page ``conversation_url`` points at."""
    conversation_id = request.match_info["conversation_id"]
    conversation = request.app[CONTEXT].state.conversations.get(conversation_id)
    if conversation is None:
        raise web.HTTPNotFound(text="no such simulated room")
    name = html.escape(conversation_id)
    status = html.escape(conversation.status)
    page = (
        f"<!doctype html><html><head><title>Tavus sim room {name}</title></head>"
        f"<body><h1>Simulated Tavus conversation {name}</h1>"
        f"<p>Status: {status}. This room is served by the local provider simulator.</p>"
        "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/conversations", create_conversation)
    app.router.add_get("/v2/conversations", list_conversations)
    app.router.add_get("/v2/conversations/{conversation_id}", get_conversation)
    app.router.add_post("/v2/conversations/{conversation_id}/end", end_conversation)
    app.router.add_delete("/v2/conversations/{conversation_id}", delete_conversation)
    app.router.add_get("/rooms/{conversation_id}", room_page)
