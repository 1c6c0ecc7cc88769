"""The unauthenticated control surface under ``/_sim/``: state dump, recorded calls, faults,
config switches, the simulated participant, the clock, and a webhook sink for demos."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tavus.sim.clock import ManualClock
from tavus.sim.context import CONTEXT, SimContext
from tavus.sim.http_layer import read_json


class AdminError(ValueError):
    """A bad admin request; answered 400 with the message."""


def _ok(**body: Any) -> web.Response:
    return web.json_response({"ok": True, **body})


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


_REQUIRED: Any = object()


def _field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED
) -> Any:
    """``body[name]`` checked against ``kind`` (None passes; bools only where ``kind`` is bool)."""
    value = body.get(name, default)
    if value is _REQUIRED:
        raise AdminError(f"'{name}' is required")
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise AdminError(f"'{name}' has the wrong type: {value!r}")
    return value


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer bad /_sim requests with 400 and the reason."""
    if not request.path.startswith("/_sim/"):
        return await handler(request)
    try:
        response: web.StreamResponse = await handler(request)
    except (AdminError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return response


async def get_state(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    return web.json_response(
        {
            "state": ctx.state.to_dump(ctx.config.daily_domain),
            "faults": ctx.faults.to_json(),
            "config": {
                "daily_rate_limits": ctx.config.is_rate_limited,
                "daily_retry_after": ctx.config.sends_retry_after,
                "daily_domain": ctx.config.daily_domain,
            },
            "now_s": ctx.clock(),
        }
    )


async def get_calls(request: web.Request) -> web.StreamResponse:
    provider = request.query.get("provider")
    calls = [
        c.to_json()
        for c in request.app[CONTEXT].calls
        if provider is None or c.provider == provider
    ]
    return web.json_response({"data": calls, "total_count": len(calls)})


async def clear_calls(request: web.Request) -> web.StreamResponse:
    request.app[CONTEXT].calls.clear()
    return _ok()


async def reset(request: web.Request) -> web.StreamResponse:
    request.app[CONTEXT].reset()
    return _ok()


async def get_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[CONTEXT].faults.to_json())


async def clear_faults(request: web.Request) -> web.StreamResponse:
    request.app[CONTEXT].faults.clear()
    return _ok()


async def set_latency(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    seconds = _field(body, "seconds", (int, float))
    request.app[CONTEXT].faults.latency(_field(body, "endpoint", str), float(seconds))
    return _ok()


async def fail_next(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    retry_after = _field(body, "retry_after_s", (int, float), None)
    request.app[CONTEXT].faults.fail_next(
        _field(body, "endpoint", str),
        _field(body, "n", int, 1),
        _field(body, "status", int, 503),
        body=body.get("body"),
        retry_after_s=None if retry_after is None else float(retry_after),
    )
    return _ok()


async def drop_next(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    request.app[CONTEXT].faults.drop_next(_field(body, "endpoint", str), _field(body, "n", int, 1))
    return _ok()


async def set_concurrency_cap(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    request.app[CONTEXT].faults.set_concurrency_cap(_field(body, "cap", int))
    return _ok()


async def set_out_of_credits(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    request.app[CONTEXT].faults.set_out_of_credits(_field(body, "enabled", bool))
    return _ok()


async def set_config(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    config = request.app[CONTEXT].config
    config.is_rate_limited = _field(body, "daily_rate_limits", bool, config.is_rate_limited)
    config.sends_retry_after = _field(body, "daily_retry_after", bool, config.sends_retry_after)
    return _ok()


def _conversation_action(ctx: SimContext, conversation_id: str, action: str) -> None:
    conversation = ctx.state.live_conversation(conversation_id)
    if conversation is None:
        raise web.HTTPNotFound(text=f"no conversation {conversation_id}")
    if action == "join":
        ctx.lifecycle.join(conversation)
    else:
        ctx.lifecycle.leave(conversation)


async def join(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    _conversation_action(ctx, request.match_info["conversation_id"], "join")
    return _ok()


async def leave(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    _conversation_action(ctx, request.match_info["conversation_id"], "leave")
    ctx.lifecycle.sweep()  # participant_left_timeout 0 ends the call at once
    return _ok()


async def say(request: web.Request) -> web.StreamResponse:
    """Body ``{"role": "user"|"assistant", "content": "..."}``: a turn of the transcript."""
    ctx = request.app[CONTEXT]
    body = await _body(request)
    role, content = _field(body, "role", str), _field(body, "content", str)
    if role not in ("user", "assistant"):
        raise AdminError("'role' must be user or assistant")
    conversation = ctx.state.live_conversation(request.match_info["conversation_id"])
    if conversation is None:
        raise web.HTTPNotFound(text=f"no conversation {request.match_info['conversation_id']}")
    if not ctx.lifecycle.say(conversation, role, content or ""):
        raise AdminError("the conversation has ended")
    return _ok()


async def sweep(request: web.Request) -> web.StreamResponse:
    return _ok(ended=request.app[CONTEXT].lifecycle.sweep())


async def advance_clock(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    if not isinstance(ctx.clock, ManualClock):
        return web.json_response({"error": "the simulator runs on the system clock"}, status=409)
    ctx.clock.advance(float(_field(await _body(request), "seconds", (int, float))))
    return _ok(now_s=ctx.clock(), ended=ctx.lifecycle.sweep())


async def get_webhooks(request: web.Request) -> web.StreamResponse:
    deliveries = [d.to_json() for d in request.app[CONTEXT].lifecycle.deliveries]
    return web.json_response({"data": deliveries, "total_count": len(deliveries)})


async def sink_webhook(request: web.Request) -> web.StreamResponse:
    request.app[CONTEXT].sunk_webhooks.append(await read_json(request))
    return _ok()


async def get_sunk_webhooks(request: web.Request) -> web.StreamResponse:
    sunk = request.app[CONTEXT].sunk_webhooks
    return web.json_response({"data": sunk, "total_count": len(sunk)})


def add_routes(app: web.Application) -> None:
    """Register the control endpoints (no auth; bodies are JSON objects):

    GET  /_sim/state                      conversations, personas, replicas, rooms, faults, config
    GET  /_sim/calls[?provider=]          recorded provider calls (DELETE clears them)
    POST /_sim/reset                      seeded catalogue, no faults, no calls
    GET  /_sim/faults                     the fault plan (DELETE clears it)
    POST /_sim/faults/latency             {"endpoint": "POST /v2/conversations", "seconds": 1.5}
    POST /_sim/faults/fail                {"endpoint", "n"=1, "status"=503, "body", "retry_after_s"}
    POST /_sim/faults/drop                {"endpoint", "n": 1}
    POST /_sim/faults/concurrency-cap     {"cap": 2 | null}
    POST /_sim/faults/out-of-credits      {"enabled": true}
    POST /_sim/config                     {"daily_rate_limits": bool, "daily_retry_after": bool}
    POST /_sim/conversations/{id}/join    the simulated human joins (.../leave: leaves)
    POST /_sim/conversations/{id}/say     {"role": "user"|"assistant", "content"}: a transcript turn
    POST /_sim/sweep                      run the timers now -> {"ended": [...]}
    POST /_sim/clock/advance              {"seconds": 60} (manual clock only, else 409)
    GET  /_sim/webhooks                   webhook deliveries attempted
    POST /_sim/webhook-sink               a callback_url target (GET lists what it received)
    """
    r = app.router
    r.add_get("/_sim/state", get_state)
    r.add_get("/_sim/calls", get_calls)
    r.add_delete("/_sim/calls", clear_calls)
    r.add_post("/_sim/reset", reset)
    r.add_get("/_sim/faults", get_faults)
    r.add_delete("/_sim/faults", clear_faults)
    r.add_post("/_sim/faults/latency", set_latency)
    r.add_post("/_sim/faults/fail", fail_next)
    r.add_post("/_sim/faults/drop", drop_next)
    r.add_post("/_sim/faults/concurrency-cap", set_concurrency_cap)
    r.add_post("/_sim/faults/out-of-credits", set_out_of_credits)
    r.add_post("/_sim/config", set_config)
    r.add_post("/_sim/conversations/{conversation_id}/join", join)
    r.add_post("/_sim/conversations/{conversation_id}/leave", leave)
    r.add_post("/_sim/conversations/{conversation_id}/say", say)
    r.add_post("/_sim/sweep", sweep)
    r.add_post("/_sim/clock/advance", advance_clock)
    r.add_get("/_sim/webhooks", get_webhooks)
    r.add_post("/_sim/webhook-sink", sink_webhook)
    r.add_get("/_sim/webhook-sink", get_sunk_webhooks)
