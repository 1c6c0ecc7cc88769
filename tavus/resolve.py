"""What a session needs from Tavus before it starts: a usable replica and a persona, each found
with few provider calls (small TTL caches) and failing with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

import structlog

from tavus.client import TavusClient
from tavus.errors import NotFoundError, ReplicaNotUsableError, RequestRejectedError
from tavus.models import CreatePersonaRequest, Persona, PersonaDefinition, Replica, ReplicaStatus

V = TypeVar("V")
# Held across processes while one persona definition is found or created: given the definition's
# content hash, an async context manager that is entered once nobody else holds that hash.
SharedLock = Callable[[str], AbstractAsyncContextManager[None]]

REPLICA_TTL_S = 300.0
PERSONA_TTL_S = 600.0
PERSONA_TAG = "[aw:{hash}]"

_log = structlog.get_logger(__name__)


class TTLCache(Generic[V]):
    """A tiny dict whose entries expire ``ttl_s`` after they were put (``clock`` injectable)."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires_at, value = item
        if self._clock() >= expires_at:
            del self._items[key]
            return None
        return value

    def put(self, key: str, value: V) -> None:
        self._items[key] = (self._clock() + self.ttl_s, value)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def discard_if(self, predicate: Callable[[V], bool]) -> None:
        for key in [k for k, (_, value) in self._items.items() if predicate(value)]:
            del self._items[key]


_replica_caches: weakref.WeakKeyDictionary[TavusClient, TTLCache[Replica]] = (
    weakref.WeakKeyDictionary()
)


def replica_cache(client: TavusClient) -> TTLCache[Replica]:
    """The usable-replica cache kept for one client (one account)."""
    cache = _replica_caches.get(client)
    if cache is None:
        cache = _replica_caches[client] = TTLCache(REPLICA_TTL_S)
    return cache


async def resolve_replica(
    client: TavusClient,
    *,
    job_replica_id: str | None,
    persona: Persona | None,
    default_replica_id: str | None,
    cache: TTLCache[Replica] | None = None,
) -> Replica:
    """The replica a session uses: the job's, else the persona's default, else the setting;
    it must exist on the account and be usable (trained)."""
    replica_id, source = _pick_replica(job_replica_id, persona, default_replica_id)
    cache = cache if cache is not None else replica_cache(client)
    cached = cache.get(replica_id)
    if cached is not None:
        return cached
    try:
        replica = await client.get_replica(replica_id)
    except NotFoundError as exc:
        raise NotFoundError(
            _missing_replica_message(replica_id, source),
            provider="tavus",
            code="replica_not_found",
            status=exc.status,
            method=exc.method,
            url=exc.url,
        ) from exc
    if not replica.is_usable:
        raise ReplicaNotUsableError(
            _unusable_replica_message(replica, source), provider="tavus", code="replica_not_ready"
        )
    cache.put(replica_id, replica)
    return replica


def _pick_replica(
    job_replica_id: str | None, persona: Persona | None, default_replica_id: str | None
) -> tuple[str, str]:
    if job_replica_id:
        return job_replica_id, "from the job's replica_id"
    if persona is not None and persona.default_replica_id:
        return persona.default_replica_id, f"from persona {persona.persona_id}'s default_replica_id"
    if default_replica_id:
        return default_replica_id, "from TAVUS_DEFAULT_REPLICA_ID"
    raise RequestRejectedError(
        "No Tavus replica to use: set the job's replica_id, the persona's default_replica_id"
        " or TAVUS_DEFAULT_REPLICA_ID.",
        provider="tavus",
        code="replica_missing",
    )


def _missing_replica_message(replica_id: str, source: str) -> str:
    hint = " (it looks like a persona id)" if replica_id.startswith("p") else ""
    return (
        f"replica {replica_id} ({source}) does not exist on this Tavus account{hint}; list yours"
        " with `avatar-worker replicas list`"
    )


def _unusable_replica_message(replica: Replica, source: str) -> str:
    status = (replica.status or "unknown").lower()
    named = f"replica {replica.replica_id} ({source})"
    if status == ReplicaStatus.ERROR:
        why = replica.error_message or "no reason given"
        return f"{named} failed training ({why}); train it again or use another replica"
    if status in (ReplicaStatus.STARTED, ReplicaStatus.TRAINING):
        progress = f" ({replica.training_progress})" if replica.training_progress else ""
        return f"{named} is still training{progress}; try again when it is ready"
    return f"{named} is not usable (status {status!r}); use a replica whose status is completed"


class PersonaResolver:
    """Find-or-create one Tavus persona per distinct ``PersonaDefinition``, and cached lookups.

    The definition's content hash is embedded in the persona name (``"Coach [aw:1a2b3c4d5e6f]"``)
    so any worker finds the persona another one created; concurrent ``ensure`` calls for one
    definition create at most one persona: within this process by a lock per definition, across
    processes by ``shared_lock`` (the worker's is held on the broker), when one is given.
    """

    def __init__(
        self,
        client: TavusClient,
        *,
        ttl_s: float = PERSONA_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        shared_lock: SharedLock | None = None,
    ) -> None:
        self._client = client
        self._shared_lock = shared_lock
        self._by_hash: TTLCache[Persona] = TTLCache(ttl_s, clock=clock)
        self._by_id: TTLCache[Persona] = TTLCache(ttl_s, clock=clock)
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def persona_name(defn: PersonaDefinition) -> str:
        return f"{defn.persona_name} {PERSONA_TAG.format(hash=defn.content_hash())}"

    async def ensure(self, defn: PersonaDefinition) -> Persona:
        """The persona for ``defn``: from the cache, else an existing one, else a new one."""
        digest = defn.content_hash()
        cached = self._by_hash.get(digest)
        if cached is not None:
            return cached
        async with self._locks.setdefault(digest, asyncio.Lock()):
            cached = self._by_hash.get(digest)
            if cached is not None:
                return cached
            shared = self._shared_lock(digest) if self._shared_lock else contextlib.nullcontext()
            async with shared:
                persona = await self._find(digest) or await self._create(defn)
            self._remember(digest, persona)
            return persona

    async def get(self, persona_id: str) -> Persona:
        """An existing persona by id (cached); unknown → NotFoundError ``persona_not_found``."""
        cached = self._by_id.get(persona_id)
        if cached is not None:
            return cached
        persona = await self._client.get_persona(persona_id)
        self._by_id.put(persona_id, persona)
        return persona

    def forget(self, persona_id: str) -> None:
        """Drop a persona found to be gone (e.g. deleted by hand) from the caches."""
        self._by_id.discard(persona_id)
        self._by_hash.discard_if(lambda persona: persona.persona_id == persona_id)

    async def _find(self, digest: str) -> Persona | None:
        tag = PERSONA_TAG.format(hash=digest)
        async for persona in self._client.iter_personas(persona_type="user"):
            if persona.persona_name and persona.persona_name.endswith(tag):
                return persona
        return None

    async def _create(self, defn: PersonaDefinition) -> Persona:
        request = CreatePersonaRequest(
            persona_name=self.persona_name(defn),
            system_prompt=defn.system_prompt,
            context=defn.context,
            default_replica_id=defn.default_replica_id,
        )
        try:
            persona = await self._client.create_persona(request)
        except RequestRejectedError as exc:
            raise RequestRejectedError(
                f"Tavus rejected the job's persona definition {defn.persona_name!r}"
                f" ({exc.message}); fix the job's persona object.",
                provider="tavus",
                code="persona_invalid",
                status=exc.status,
                method=exc.method,
                url=exc.url,
            ) from exc
        _log.info(
            "tavus.persona_created", persona_id=persona.persona_id, persona_hash=defn.content_hash()
        )
        # Tavus answers create with id, name and created_at only: fill in what we sent.
        filled = {k: v for k, v in request.to_json().items() if getattr(persona, k, None) is None}
        return persona.model_copy(update=filled)

    def _remember(self, digest: str, persona: Persona) -> None:
        self._by_hash.put(digest, persona)
        self._by_id.put(persona.persona_id, persona)
