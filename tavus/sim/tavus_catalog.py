"""Tavus ``/v2/personas`` (create, flat get, list, RFC 6902 patch, delete) and ``/v2/replicas``
(list, get): the catalogue a conversation draws its persona and replica from."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
from aiohttp import web

from tavus.sim.clock import iso_ms
from tavus.sim.context import CONTEXT
from tavus.sim.http_layer import INVALID_JSON, read_json
from tavus.sim.state import Persona, new_tavus_id
from tavus.sim.tavus_conversations import bad_request, page_params

PIPELINE_MODES = ("full", "echo", "speech-to-speech")
_OPTIONAL_FIELDS = ("document_ids", "document_tags", "objectives_id", "guardrails_id")
_LIST_FIELDS = (
    "replica_id",
    "replica_name",
    "thumbnail_video_url",
    "training_progress",
    "status",
    "created_at",
)
_FROZEN_FIELDS = ("persona_id", "created_at", "updated_at")
_PATCH_ERRORS = (
    jsonpatch.JsonPatchException,
    jsonpointer.JsonPointerException,
    TypeError,
    KeyError,
    ValueError,
    AttributeError,
    IndexError,
)


def invalid_persona() -> web.Response:
    return bad_request("Invalid persona_id")


def invalid_patch() -> web.Response:
    return web.json_response({"message": "Invalid JSON patch format"}, status=422)


def _persona_error(request: web.Request, record: dict[str, Any]) -> web.Response | None:
    """The 400 for a persona record that Tavus would refuse, else None."""
    mode = record.get("pipeline_mode")
    if mode not in PIPELINE_MODES:
        return bad_request("pipeline_mode must be one of full, echo, speech-to-speech")
    prompt = record.get("system_prompt")
    if mode == "full" and not (isinstance(prompt, str) and prompt.strip()):
        return bad_request("system_prompt is required when pipeline_mode is full")
    if record.get("persona_name") is not None and not isinstance(record["persona_name"], str):
        return bad_request("persona_name must be a string")
    if not isinstance(record.get("layers"), dict):
        return bad_request("layers must be an object")
    replica_id = record.get("default_replica_id")
    if replica_id is not None and replica_id not in request.app[CONTEXT].state.replicas:
        return bad_request("Invalid replica_uuid")
    return None


async def create_persona(request: web.Request) -> web.StreamResponse:
    """POST /v2/personas: 200 {persona_id, persona_name, created_at}."""
    ctx = request.app[CONTEXT]
    body = await read_json(request)
    if body is INVALID_JSON or not isinstance(body, dict):
        return bad_request("Request body must be a JSON object")
    created_at = iso_ms(ctx.clock())
    record: dict[str, Any] = {
        "persona_id": new_tavus_id("p"),
        "persona_name": body.get("persona_name", body.get("pal_name")),
        "pipeline_mode": body.get("pipeline_mode", "full"),
        "system_prompt": body.get("system_prompt"),
        "context": body.get("context"),
        "default_replica_id": body.get("default_replica_id", body.get("default_face_id")),
        "layers": body.get("layers", {}),
    }
    record |= {name: body[name] for name in _OPTIONAL_FIELDS if name in body}
    record |= {"created_at": created_at, "updated_at": created_at}
    error = _persona_error(request, record)
    if error is not None:
        return error
    ctx.state.personas[record["persona_id"]] = Persona(record, "user")
    return web.json_response(
        {key: record[key] for key in ("persona_id", "persona_name", "created_at")}
    )


def _persona(request: web.Request, *, is_owned: bool = False) -> Persona | None:
    persona = request.app[CONTEXT].state.personas.get(request.match_info["persona_id"])
    if persona is None or (is_owned and persona.persona_type != "user"):
        return None
    return persona


async def get_persona(request: web.Request) -> web.StreamResponse:
    """GET /v2/personas/{id}: the flat record (not wrapped in data)."""
    persona = _persona(request)
    return invalid_persona() if persona is None else web.json_response(persona.data)


async def list_personas(request: web.Request) -> web.StreamResponse:
    """GET /v2/personas?limit=&page=&persona_type=user|system."""
    paging = page_params(request)
    if isinstance(paging, web.Response):
        return paging
    limit, page = paging
    persona_type = request.query.get("persona_type")
    if persona_type is not None and persona_type not in ("user", "system"):
        return bad_request("persona_type must be user or system")
    personas = [
        p.data
        for p in request.app[CONTEXT].state.personas.values()
        if persona_type is None or p.persona_type == persona_type
    ]
    chunk = personas[(page - 1) * limit : page * limit]
    return web.json_response({"data": chunk, "total_count": len(personas)})


async def patch_persona(request: web.Request) -> web.StreamResponse:
    """PATCH /v2/personas/{id}: RFC 6902; 200 with the persona, 304 unchanged, 422 bad patch."""
    persona = _persona(request, is_owned=True)
    if persona is None:
        return invalid_persona()
    ops = await read_json(request)
    if not isinstance(ops, list) or not ops:
        return invalid_patch()
    try:
        patched = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(persona.data))
    except _PATCH_ERRORS:
        return invalid_patch()
    if not isinstance(patched, dict) or any(
        patched.get(name) != persona.data.get(name) for name in _FROZEN_FIELDS
    ):
        return invalid_patch()
    if patched == persona.data:
        return web.Response(status=304)
    error = _persona_error(request, patched)
    if error is not None:
        return error
    patched["updated_at"] = iso_ms(request.app[CONTEXT].clock())
    persona.data = patched
    return web.json_response(patched)


async def delete_persona(request: web.Request) -> web.StreamResponse:
    """DELETE /v2/personas/{id}: 204."""
    persona = _persona(request, is_owned=True)
    if persona is None:
        return invalid_persona()
    del request.app[CONTEXT].state.personas[persona.persona_id]
    return web.Response(status=204)


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


async def list_replicas(request: web.Request) -> web.StreamResponse:
    """GET /v2/replicas?limit=&page=&verbose=&replica_type=&replica_ids=."""
    paging = page_params(request)
    if isinstance(paging, web.Response):
        return paging
    limit, page = paging
    replica_type = request.query.get("replica_type")
    if replica_type is not None and replica_type not in ("user", "system"):
        return bad_request("replica_type must be user or system")
    wanted = {i.strip() for i in request.query.get("replica_ids", "").split(",") if i.strip()}
    fields = _LIST_FIELDS + (("replica_type",) if _is_true(request.query.get("verbose")) else ())
    replicas = [
        {name: r.get(name) for name in fields}
        for r in request.app[CONTEXT].state.replicas.values()
        if (replica_type is None or r["replica_type"] == replica_type)
        and (not wanted or r["replica_id"] in wanted)
    ]
    chunk = replicas[(page - 1) * limit : page * limit]
    return web.json_response({"data": chunk, "total_count": len(replicas)})


async def get_replica(request: web.Request) -> web.StreamResponse:
    """GET /v2/replicas/{id}: the full record."""
    replica = request.app[CONTEXT].state.replicas.get(request.match_info["replica_id"])
    if replica is None:
        return bad_request("Invalid replica_id")
    return web.json_response(replica)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/personas", create_persona)
    app.router.add_get("/v2/personas", list_personas)
    app.router.add_get("/v2/personas/{persona_id}", get_persona)
    app.router.add_patch("/v2/personas/{persona_id}", patch_persona)
    app.router.add_delete("/v2/personas/{persona_id}", delete_persona)
    app.router.add_get("/v2/replicas", list_replicas)
    app.router.add_get("/v2/replicas/{replica_id}", get_replica)
