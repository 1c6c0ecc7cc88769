"""The async Daily REST (v1) client: rooms and meeting tokens, with find-or-create semantics for
rooms (Daily has no idempotency key) and every failure a ``tavus.errors`` class whose message says
what to do (classification in ``classify_daily_error``); plus ``room_name_for``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from tavus._http import (
    FailedResponse,
    JsonHttpClient,
    LogEvents,
    Observer,
    ProviderClient,
    Reply,
    RetryPolicy,
    is_unprocessed,
    unexpected_message,
)
from tavus.daily_models import MeetingTokenReply, Room, RoomPage
from tavus.errors import (
    AuthError,
    NotFoundError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    UnexpectedResponseError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DailyClient",
    "Room",
    "RoomPage",
    "classify_daily_error",
    "room_name_for",
]

M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "https://api.daily.co/v1"
MAX_PAGES = 1000
MAX_ROOM_NAME_CHARS = 30  # the old "domain + room ≤ 41" rule, with room for an 11-char domain
HASH_CHARS = 10
DAILY_EVENTS = LogEvents(
    request_failed="daily.request_failed",
    retrying="daily.retrying",
    observer_failed="daily.observer_failed",
)
_NAMED_PROPERTIES = ("exp", "eject_at_room_exp", "max_participants")
_ROOM = "/rooms/{name}"

_log = structlog.get_logger(__name__)


class DailyClient(ProviderClient):
    """Async client for Daily's REST API (v1). Use ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._http = JsonHttpClient(
            provider="daily",
            base_url=base_url,
            headers={"authorization": f"Bearer {api_key}", "accept": "application/json"},
            classify=classify_daily_error,
            events=DAILY_EVENTS,
            transport=transport,
            timeout_s=timeout_s,
            retry=retry,
            observer=observer,
            secrets=(api_key,),
        )

    # ---- rooms -------------------------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        *,
        privacy: Literal["private", "public"] = "private",
        exp: int | None,
        eject_at_room_exp: bool = True,
        max_participants: int | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Room:
        """Create room ``name``, or adopt it when it already exists (a redelivered job).

        Any 400 from ``POST /rooms`` is followed by ``GET /rooms/{name}``: Daily gives a taken
        name and an invalid one the same error type. Creation is retried only when Daily surely
        did not act (connect error, 429); after a 5xx or a lost answer, a lookup by name decides.
        ``properties`` holds further room properties; the named arguments may not repeat them.
        """
        body = {
            "name": name,
            "privacy": privacy,
            "properties": _room_properties(exp, eject_at_room_exp, max_participants, properties),
        }
        check_first = False

        async def attempt() -> Room:
            nonlocal check_first
            if check_first and (existing := await self._find_room(name)) is not None:
                return _adopted(existing, privacy)
            try:
                reply = await self._http.send_once(
                    "POST", "/rooms", json_body=body, ids={"name": name}
                )
            except RequestRejectedError as error:
                if error.status == 400 and (existing := await self._find_room(name)) is not None:
                    return _adopted(existing, privacy)
                raise
            except ProviderError as error:
                check_first = check_first or not is_unprocessed(error)
                raise
            return self._parse(Room, reply, "POST", "/rooms")

        async def should_retry(_error: ProviderError) -> bool:
            return True  # the lookup by name guards every retry that might duplicate

        return await self._http.retrying(
            attempt, should_retry=should_retry, method="POST", endpoint="/rooms"
        )

    async def get_room(self, name: str) -> Room:
        """The live room ``name``; ``NotFoundError`` (``room_not_found``) if absent or expired."""
        reply = await self._http.request("GET", _ROOM, path_params={"name": name}, idempotent=True)
        return self._parse(Room, reply, "GET", _ROOM)

    async def list_rooms(self, *, limit: int = 100, starting_after: str | None = None) -> RoomPage:
        """One page of live rooms, newest first; ``starting_after`` is a room **id**."""
        params: dict[str, str | int] = {"limit": limit}
        if starting_after is not None:
            params["starting_after"] = starting_after
        reply = await self._http.request("GET", "/rooms", params=params, idempotent=True)
        return self._parse(RoomPage, reply, "GET", "/rooms")

    async def iter_rooms(self, *, page_size: int = 100) -> AsyncIterator[Room]:
        """Every live room, page after page (cursor: the last room's id) until a page is empty."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self.list_rooms(limit=page_size, starting_after=cursor)
            if not page.data or page.data[-1].id == cursor:
                return
            for room in page.data:
                yield room
            cursor = page.data[-1].id

    async def delete_room(self, name: str) -> bool:
        """Delete room ``name`` (ejecting anyone in it). True when this call deleted it; False
        when it was already gone (404, including an expired room's 404 with ``deleted: true``)."""
        if await self._unless_missing("DELETE", name) is None:
            _log.info("daily.room_already_gone", room=name)
            return False
        return True

    async def _find_room(self, name: str) -> Room | None:
        reply = await self._unless_missing("GET", name)
        if reply is None:
            return None
        return self._parse(Room, reply, "GET", _ROOM)

    async def _unless_missing(self, method: str, name: str) -> Reply | None:
        """An idempotent call on room ``name``, retried per the policy; None when Daily says the
        room does not exist (an expected answer here, so it is not logged as a failure)."""

        async def attempt() -> Reply | None:
            try:
                return await self._http.send_once(
                    method, _ROOM, path_params={"name": name}, expect="optional"
                )
            except NotFoundError:
                return None

        async def should_retry(_error: ProviderError) -> bool:
            return True

        return await self._http.retrying(
            attempt, should_retry=should_retry, method=method, endpoint=_ROOM
        )

    # ---- meeting tokens ----------------------------------------------------------------------

    async def create_meeting_token(
        self,
        room_name: str,
        *,
        is_owner: bool,
        user_name: str | None = None,
        user_id: str | None = None,
        exp: int | None = None,
        eject_at_token_exp: bool = False,
    ) -> str:
        """A meeting token (JWT) for one room. Minting twice is harmless, so it is retried like
        a read. ``user_id`` is at most 36 characters for Daily."""
        values = {"user_name": user_name, "user_id": user_id, "exp": _seconds(exp)}
        properties: dict[str, Any] = {"room_name": room_name, "is_owner": is_owner}
        properties |= {k: v for k, v in values.items() if v is not None}
        if eject_at_token_exp:
            properties["eject_at_token_exp"] = True
        reply = await self._http.request(
            "POST",
            "/meeting-tokens",
            json_body={"properties": properties},
            idempotent=True,
            ids={"name": room_name},
        )
        return self._parse(MeetingTokenReply, reply, "POST", "/meeting-tokens").token

    # ---- plumbing ----------------------------------------------------------------------------

    def _parse(self, model: type[M], reply: Reply, method: str, endpoint: str) -> M:
        """Validate a body; a wrong shape is an ``UnexpectedResponseError`` naming the field."""
        try:
            return model.model_validate(reply.body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            message = unexpected_message(
                "daily",
                method,
                reply.path or endpoint,
                got=f"{reply.status} JSON whose {where} is wrong ({first['msg']})",
                expected=_SHAPES.get(model.__name__, "a JSON object"),
                base_url=self.base_url,
            )
            raise UnexpectedResponseError(
                message,
                provider="daily",
                code="daily_unexpected_response",
                status=reply.status,
                method=method,
                url=reply.path,
            ) from exc


_SHAPES = {
    "Room": "a room object ({id, name, url, ...})",
    "RoomPage": "a page of rooms ({total_count, data: [...]})",
    "MeetingTokenReply": 'a token ({"token": "<JWT>"})',
}


def _adopted(room: Room, privacy: str) -> Room:
    """The existing room, unless it differs in privacy (never hand out a public room for a
    private session)."""
    if room.privacy != privacy:
        raise RequestRejectedError(
            f"Daily room {room.name} already exists as a {room.privacy} room, but a {privacy} one"
            " was asked for; delete that room or use another session id.",
            provider="daily",
            code="daily_rejected",
            method="POST",
        )
    _log.info("daily.room_adopted", room=room.name, room_id=room.id)
    return room


def _seconds(value: float | None) -> int | None:
    """Daily wants whole Unix seconds."""
    return None if value is None else int(value)


def _room_properties(
    exp: int | None,
    eject_at_room_exp: bool,
    max_participants: int | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    repeated = sorted(set(extra or {}) & set(_NAMED_PROPERTIES))
    if repeated:
        raise ValueError(
            f"pass {', '.join(repeated)} as create_room's own argument(s), not in properties"
        )
    properties = dict(extra or {})
    properties["eject_at_room_exp"] = eject_at_room_exp
    if exp is not None:
        properties["exp"] = _seconds(exp)
    if max_participants is not None:
        properties["max_participants"] = max_participants
    return properties


# ---- room names --------------------------------------------------------------------------------

_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def room_name_for(session_id: str, prefix: str = "aw-") -> str:
    """The Daily room name of a session: ``prefix + session_id`` when that is already a valid,
    short name; otherwise the cleaned, shortened id plus ``-`` and a hash of the original id,
    so that the name is deterministic and two different ids do not share a room."""
    if not session_id:
        raise ValueError("a session id is needed to name its room")
    budget = MAX_ROOM_NAME_CHARS - len(prefix) - 1 - HASH_CHARS
    if _DISALLOWED.search(prefix) or budget < 1:
        raise ValueError(
            f"room name prefix {prefix!r} must be at most"
            f" {MAX_ROOM_NAME_CHARS - HASH_CHARS - 2} of A-Z, a-z, 0-9, '-' and '_'"
        )
    plain = prefix + session_id
    if len(plain) <= MAX_ROOM_NAME_CHARS and not _DISALLOWED.search(session_id):
        return plain
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:HASH_CHARS]
    return f"{prefix}{_DISALLOWED.sub('-', session_id)[:budget]}-{digest}"


# ---- error classification ----------------------------------------------------------------------

_AUTH_HEADER = re.compile(r"authorization header", re.I)


def classify_daily_error(resp: FailedResponse) -> ProviderError:
    """Map a Daily error response (``{"error": type, "info": text}``) to the error class and the
    message a user sees."""
    kind, info = daily_error_parts(resp)
    said = f"{resp.status} {kind}" if kind else str(resp.status)
    quoted = f"{said}: {info}" if info else said
    error = _auth_error(resp.status, kind, info, quoted) or _transient_error(resp, said)
    if error is not None:
        return error
    if resp.status == 404:
        return _not_found(resp, quoted)
    if not kind:
        return resp.unexpected('a Daily error body ({"error": type, "info": text})')
    return RequestRejectedError(
        f"Daily rejected {resp.method} {resp.path} ({quoted}).",
        provider="daily",
        code="daily_rejected",
    )


def _auth_error(status: int, kind: str, info: str, quoted: str) -> AuthError | None:
    """401, 403, and the 400s about the Authorization header (missing or malformed)."""
    if status == 401:
        message = f"DAILY_API_KEY was rejected by Daily ({quoted}). Check the key in the Daily"
        message += " dashboard."
    elif status == 403:
        message = (
            f"Daily refused the request with DAILY_API_KEY ({quoted}); the key's domain or plan"
            " does not allow it. Check the key and plan in the Daily dashboard."
        )
    elif kind == "authorization-header-error" or (status == 400 and _AUTH_HEADER.search(info)):
        message = (
            f"Daily did not accept the Authorization header ({quoted}); DAILY_API_KEY is"
            " probably empty or malformed. Check the key in the Daily dashboard."
        )
    else:
        return None
    return AuthError(message, provider="daily", code="daily_auth")


def _transient_error(resp: FailedResponse, said: str) -> ProviderError | None:
    """408, 429 and 5xx: worth trying again later."""
    where = f"{said} on {resp.method} {resp.path}"
    if resp.status == 408:
        return ProviderTimeoutError(
            f"Daily timed out ({where}); try again later.", provider="daily"
        )
    if resp.status == 429:
        after = f"; retry after {resp.retry_after_s:g} s" if resp.retry_after_s is not None else ""
        return RateLimitedError(
            f"Daily is rate limiting requests ({where}){after}.",
            provider="daily",
            code="daily_rate_limited",
            retry_after_s=resp.retry_after_s,
        )
    if resp.status >= 500:
        return ServerError(
            f"Daily is unavailable ({where}); try again later or check status.daily.co.",
            provider="daily",
            code="daily_unavailable",
            retry_after_s=resp.retry_after_s,
        )
    return None


def _not_found(resp: FailedResponse, quoted: str) -> ProviderError:
    body = resp.body if isinstance(resp.body, dict) else {}
    if body.get("error") != "not-found" and body.get("deleted") is not True:
        return resp.unexpected('a Daily "not-found" error body')
    name = resp.ids.get("name")
    room = f"Daily room {name}" if name else "The Daily room"
    return NotFoundError(
        f"{room} does not exist ({quoted}); it may have expired or been deleted.",
        provider="daily",
        code="room_not_found",
    )


def daily_error_parts(resp: FailedResponse) -> tuple[str, str]:
    """Daily's error ``type`` and ``info`` text ("" when absent or not a Daily error body)."""
    body = resp.body
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return "", ""
    info = body.get("info")
    return _clip(body["error"]), _clip(info) if isinstance(info, str) else ""


def _clip(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"
