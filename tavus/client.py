"""The async Tavus v2 client: one method per endpoint, typed models in and out, and every failure
a ``tavus.errors`` class whose message says what to do (see ``tavus._tavus_errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from tavus._http import (
    JsonHttpClient,
    LogEvents,
    Observer,
    ProviderClient,
    Reply,
    RetryPolicy,
    is_unprocessed,
    unexpected_message,
)
from tavus._tavus_errors import classify_tavus_error
from tavus.errors import ProviderError, UnexpectedResponseError
from tavus.models import (
    Conversation,
    ConversationStatus,
    CreateConversationRequest,
    CreatePersonaRequest,
    Page,
    Persona,
    Replica,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_log = structlog.get_logger(__name__)

DEFAULT_BASE_URL = "https://tavusapi.com/v2"
MAX_PAGES = 1000
TAVUS_EVENTS = LogEvents(
    request_failed="tavus.request_failed",
    retrying="tavus.retrying",
    observer_failed="tavus.observer_failed",
)


class TavusClient(ProviderClient):
    """Async client for the Tavus CVI REST API (v2). Use ``async with`` or call ``aclose()``."""

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
            provider="tavus",
            base_url=base_url,
            headers={"x-api-key": api_key, "accept": "application/json"},
            classify=classify_tavus_error,
            events=TAVUS_EVENTS,
            transport=transport,
            timeout_s=timeout_s,
            retry=retry,
            observer=observer,
            secrets=(api_key,),
        )

    # ---- conversations -----------------------------------------------------------------------

    async def create_conversation(self, req: CreateConversationRequest) -> Conversation:
        """Start a conversation (billing starts now). Not idempotent, so it is retried only when
        Tavus surely did not act (connect error, 429) or, for a named request, when a lookup by
        ``conversation_name`` shows nothing was created; if one was, that one is returned."""
        name = req.conversation_name
        body = req.to_json()
        ids = {"replica_id": req.replica_id, "persona_id": req.persona_id}
        check_first = False

        async def attempt() -> Conversation:
            nonlocal check_first
            if check_first and name:
                created = await self.find_conversations_by_name(
                    name, status=ConversationStatus.ACTIVE
                )
                if created:
                    _log.info(
                        "tavus.conversation_recovered",
                        conversation_id=created[0].conversation_id,
                        conversation_name=name,
                    )
                    return created[0]
            try:
                reply = await self._http.send_once(
                    "POST", "/conversations", json_body=body, ids=ids
                )
            except ProviderError as error:
                check_first = not is_unprocessed(error)
                raise
            return self._parse(Conversation, reply, "POST", "/conversations")

        async def should_retry(error: ProviderError) -> bool:
            return is_unprocessed(error) or bool(name)

        return await self._http.retrying(
            attempt, should_retry=should_retry, method="POST", endpoint="/conversations"
        )

    async def get_conversation(
        self, conversation_id: str, *, verbose: bool = False
    ) -> Conversation:
        endpoint = "/conversations/{conversation_id}"
        reply = await self._get(endpoint, {"conversation_id": conversation_id}, _flags(verbose))
        return self._parse(Conversation, reply, "GET", endpoint)

    async def list_conversations(
        self, *, status: str | None = None, limit: int = 10, page: int = 1
    ) -> Page[Conversation]:
        params = _query(status=status, limit=limit, page=page)
        reply = await self._get("/conversations", None, params)
        return self._parse(Page[Conversation], reply, "GET", "/conversations")

    def iter_conversations(
        self, *, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Conversation]:
        """Every conversation (optionally of one status), page after page."""
        return _iter_pages(
            lambda page: self.list_conversations(status=status, limit=page_size, page=page),
            page_size,
        )

    async def find_conversations_by_name(
        self, name: str, *, status: str | None = None
    ) -> list[Conversation]:
        return [
            c async for c in self.iter_conversations(status=status) if c.conversation_name == name
        ]

    async def end_conversation(self, conversation_id: str) -> None:
        """End the call and free its concurrency slot; ending an ended one is harmless."""
        await self._http.request(
            "POST",
            "/conversations/{conversation_id}/end",
            path_params={"conversation_id": conversation_id},
            idempotent=True,
            expect="none",
        )

    async def delete_conversation(self, conversation_id: str, *, hard: bool = False) -> None:
        await self._http.request(
            "DELETE",
            "/conversations/{conversation_id}",
            path_params={"conversation_id": conversation_id},
            params={"hard": "true"} if hard else None,
            idempotent=True,
            expect="none",
        )

    # ---- personas ----------------------------------------------------------------------------

    async def create_persona(self, req: CreatePersonaRequest) -> Persona:
        """Create a persona; retried only when Tavus surely did not act (not idempotent)."""
        reply = await self._http.request(
            "POST",
            "/personas",
            json_body=req.to_json(),
            idempotent=False,
            ids={"replica_id": req.default_replica_id},
        )
        return self._parse(Persona, reply, "POST", "/personas")

    async def get_persona(self, persona_id: str) -> Persona:
        endpoint = "/personas/{persona_id}"
        reply = await self._get(endpoint, {"persona_id": persona_id}, None)
        return self._parse(Persona, reply, "GET", endpoint)

    async def list_personas(
        self, *, persona_type: str | None = None, limit: int = 10, page: int = 1
    ) -> Page[Persona]:
        params = _query(persona_type=persona_type, limit=limit, page=page)
        reply = await self._get("/personas", None, params)
        return self._parse(Page[Persona], reply, "GET", "/personas")

    def iter_personas(
        self, *, persona_type: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Persona]:
        return _iter_pages(
            lambda page: self.list_personas(persona_type=persona_type, limit=page_size, page=page),
            page_size,
        )

    async def patch_persona(self, persona_id: str, ops: list[dict[str, Any]]) -> Persona | None:
        """Apply a JSON Patch (RFC 6902). None when Tavus says nothing changed (304)."""
        endpoint = "/personas/{persona_id}"
        reply = await self._http.request(
            "PATCH",
            endpoint,
            path_params={"persona_id": persona_id},
            json_body=ops,
            idempotent=False,
            expect="optional",
        )
        if reply.status == 304:
            return None
        if isinstance(reply.body, dict) and ("persona_id" in reply.body or "data" in reply.body):
            return self._parse(Persona, reply, "PATCH", endpoint)
        return await self.get_persona(persona_id)  # the 200 body is not documented

    async def delete_persona(self, persona_id: str) -> None:
        await self._http.request(
            "DELETE",
            "/personas/{persona_id}",
            path_params={"persona_id": persona_id},
            idempotent=True,
            expect="none",
        )

    # ---- replicas ----------------------------------------------------------------------------

    async def list_replicas(
        self,
        *,
        replica_type: str | None = None,
        verbose: bool = False,
        limit: int = 10,
        page: int = 1,
    ) -> Page[Replica]:
        params = _query(replica_type=replica_type, limit=limit, page=page) | _flags(verbose)
        reply = await self._get("/replicas", None, params)
        return self._parse(Page[Replica], reply, "GET", "/replicas")

    def iter_replicas(
        self, *, replica_type: str | None = None, verbose: bool = False, page_size: int = 100
    ) -> AsyncIterator[Replica]:
        return _iter_pages(
            lambda page: self.list_replicas(
                replica_type=replica_type, verbose=verbose, limit=page_size, page=page
            ),
            page_size,
        )

    async def get_replica(self, replica_id: str, *, verbose: bool = False) -> Replica:
        endpoint = "/replicas/{replica_id}"
        reply = await self._get(endpoint, {"replica_id": replica_id}, _flags(verbose))
        return self._parse(Replica, reply, "GET", endpoint)

    # ---- plumbing ----------------------------------------------------------------------------

    async def _get(
        self, endpoint: str, path_params: dict[str, str] | None, params: dict[str, str | int] | None
    ) -> Reply:
        return await self._http.request(
            "GET", endpoint, path_params=path_params, params=params or None, idempotent=True
        )

    def _parse(self, model: type[M], reply: Reply, method: str, endpoint: str) -> M:
        """Validate a body; a wrong shape is an ``UnexpectedResponseError`` naming the field."""
        try:
            return model.model_validate(reply.body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            got = (
                f"{reply.status} JSON whose {where} is wrong ({first['msg']})"
                if where
                else f"{reply.status} a JSON {_json_kind(reply.body)}"
            )
            message = unexpected_message(
                "tavus",
                method,
                reply.path or endpoint,
                got=got,
                expected=f"a {_shape_name(model)}",
                base_url=self.base_url,
            )
            raise UnexpectedResponseError(
                message,
                provider="tavus",
                code="tavus_unexpected_response",
                status=reply.status,
                method=method,
                url=reply.path,
            ) from exc


async def _iter_pages(
    fetch: Callable[[int], Awaitable[Page[T]]], page_size: int
) -> AsyncIterator[T]:
    """Pages 1, 2, … until a short page, ``total_count`` items, or ``MAX_PAGES``."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1; got {page_size}")
    seen = 0
    for number in range(1, MAX_PAGES + 1):
        page = await fetch(number)
        for item in page.data:
            yield item
        seen += len(page.data)
        if len(page.data) < page_size or (
            page.total_count is not None and seen >= page.total_count
        ):
            return


def _query(**values: str | int | None) -> dict[str, str | int]:
    return {k: v for k, v in values.items() if v is not None}


def _flags(verbose: bool) -> dict[str, str | int]:
    return {"verbose": "true"} if verbose else {}


def _json_kind(body: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(body), "number")


def _shape_name(model: type[BaseModel]) -> str:
    name = model.__name__
    if name.startswith("Page["):
        return f"page of {name[5:-1].lower()}s ({{data: [...], total_count}})"
    return f"{name.lower()} object"
