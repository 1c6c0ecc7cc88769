"""The layer every provider request passes through, in order: record, latency, dropped
connection, injected failure, auth (Tavus x-api-key / Daily Bearer), Daily rate limit, handler."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from tavus.sim.context import CONTEXT, RecordedCall, SimContext
from tavus.sim.faults import FailRule
from tavus.sim.ratelimit import daily_bucket

log = structlog.get_logger(__name__)

INVALID_JSON = object()  # what ``read_json`` returns for a body that is not JSON


def provider_for(path: str) -> str | None:
    if path == "/v2" or path.startswith("/v2/"):
        return "tavus"
    if path == "/v1" or path.startswith("/v1/"):
        return "daily"
    return None


async def read_json(request: web.Request) -> Any:
    """The parsed body, None when empty, ``INVALID_JSON`` when it does not parse."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return INVALID_JSON


def tavus_key(request: web.Request, ctx: SimContext) -> str | None:
    key = request.headers.get("x-api-key", "")
    return key if key in ctx.config.tavus_api_keys else None


def daily_key(request: web.Request) -> str:
    """The Bearer key of a request that already passed auth (it signs Daily tokens)."""
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


def _daily_auth(request: web.Request, ctx: SimContext) -> tuple[str | None, web.Response | None]:
    """The valid Daily key, or the error response Daily gives."""
    header = request.headers.get("Authorization")
    scheme, _, key = (header or "").partition(" ")
    if header is None or scheme.lower() != "bearer" or not key.strip():
        info = "Authorization header missing or not 'Bearer <key>'"
        body = {"error": "authorization-header-error", "info": info}
        return None, web.json_response(body, status=400)
    if key.strip() not in ctx.config.daily_api_keys:
        return None, web.json_response({"error": "authentication-error"}, status=401)
    return key.strip(), None


def _injected(provider: str, rule: FailRule) -> web.Response:
    body = rule.body
    if body is None and provider == "daily":
        kind = "rate-limit-error" if rule.status == 429 else "server-error"
        body = {"error": kind, "info": "injected by the simulator"}
    elif body is None:
        body = {"message": f"Injected failure ({rule.status})"}
    headers = {}
    if rule.retry_after_s is not None:
        headers["Retry-After"] = f"{rule.retry_after_s:g}"
    return web.json_response(body, status=rule.status, headers=headers)


async def _guarded(
    request: web.Request, handler: Handler, ctx: SimContext, call: RecordedCall
) -> web.StreamResponse:
    if call.provider == "tavus":
        key = tavus_key(request, ctx)
        call.is_key_valid = key is not None
        if key is None:
            return web.json_response({"message": "Invalid access token"}, status=401)
    else:
        key, error = _daily_auth(request, ctx)
        call.is_key_valid = key is not None
        if error is not None or key is None:
            return error or web.json_response({"error": "authentication-error"}, status=401)
        if ctx.config.is_rate_limited:
            wait_s = ctx.limiter.try_acquire(key, daily_bucket(request.method, request.path))
            if wait_s is not None:
                headers = {"Retry-After": str(max(1, math.ceil(wait_s)))}
                return web.json_response(
                    {"error": "rate-limit-error", "info": "too many requests"},
                    status=429,
                    headers=headers if ctx.config.sends_retry_after else None,
                )
    try:
        return await handler(request)
    except web.HTTPException as exc:  # unknown route or method: answer in the provider's shape
        if call.provider == "tavus":
            return web.json_response({"message": exc.reason}, status=exc.status)
        kind = "not-found" if exc.status == 404 else "invalid-request-error"
        return web.json_response({"error": kind, "info": exc.reason}, status=exc.status)


@web.middleware
async def provider_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every provider call and apply the fault plan before the real handler."""
    provider = provider_for(request.path)
    if provider is None:
        return await handler(request)
    ctx = request.app[CONTEXT]
    body = await read_json(request)
    call = RecordedCall(
        provider=provider,
        method=request.method,
        path=request.path,
        query=dict(request.query),
        json=None if body is INVALID_JSON else body,
        at_s=ctx.clock(),
    )
    ctx.calls.append(call)
    if provider == "tavus":
        ctx.lifecycle.sweep()  # the API always reflects the clock, even between sweeper ticks
    delay_s = ctx.faults.latency_for(request.method, request.path)
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    if ctx.faults.take_drop(request.method, request.path):
        log.info("sim.connection_dropped", method=request.method, path=request.path)
        call.is_key_valid = _is_key_valid(request, ctx, provider)
        return _drop(request)  # call.status stays None: nothing was answered
    rule = ctx.faults.take_failure(request.method, request.path)
    if rule is not None:
        call.is_key_valid = _is_key_valid(request, ctx, provider)
        response: web.StreamResponse = _injected(provider, rule)
    else:
        response = await _guarded(request, handler, ctx, call)
    call.status = response.status
    return response


def _is_key_valid(request: web.Request, ctx: SimContext, provider: str) -> bool:
    if provider == "tavus":
        return tavus_key(request, ctx) is not None
    return _daily_auth(request, ctx)[0] is not None


def _drop(request: web.Request) -> web.StreamResponse:
    """Abort the TCP connection so the client sees a transport error, not a response.

    aiohttp then fails to write the returned placeholder and drops it quietly.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500, text="dropped")
