"""Replica resolution (job → persona → setting, must be usable) and persona find-or-create."""

from __future__ import annotations

import asyncio

import bodies
import httpx
import pytest
from fake_tavus import FakeTavus

from tavus.client import TavusClient
from tavus.errors import NotFoundError, ReplicaNotUsableError, RequestRejectedError
from tavus.models import Persona, PersonaDefinition
from tavus.resolve import PersonaResolver, TTLCache, resolve_replica

USABLE = {"replica_id": "r1", "status": "completed", "training_progress": "100/100"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_job_replica_wins_and_is_cached(fake: FakeTavus, client: TavusClient) -> None:
    """The job's replica_id is used over the persona's and the setting; a second call is cached."""
    fake.reply("GET", "/replicas/r1", 200, USABLE)
    persona = Persona(persona_id="p1", default_replica_id="r2")
    for _ in range(2):
        replica = await resolve_replica(
            client, job_replica_id="r1", persona=persona, default_replica_id="r3"
        )
        assert replica.replica_id == "r1"
    assert len(fake.seen) == 1


async def test_persona_default_then_setting(fake: FakeTavus, client: TavusClient) -> None:
    """Without a job replica the persona's default is used, then TAVUS_DEFAULT_REPLICA_ID."""
    fake.reply("GET", "/replicas/r2", 200, USABLE | {"replica_id": "r2"})
    fake.reply("GET", "/replicas/r3", 200, USABLE | {"replica_id": "r3"})
    persona = Persona(persona_id="p1", default_replica_id="r2")
    picked = await resolve_replica(
        client, job_replica_id=None, persona=persona, default_replica_id="r3"
    )
    fallback = await resolve_replica(
        client, job_replica_id=None, persona=Persona(persona_id="p2"), default_replica_id="r3"
    )
    assert (picked.replica_id, fallback.replica_id) == ("r2", "r3")


async def test_no_replica_anywhere_says_where_to_set_one(client: TavusClient) -> None:
    """No replica from any source is replica_missing, naming all three places; Tavus is not asked."""
    with pytest.raises(RequestRejectedError) as caught:
        await resolve_replica(client, job_replica_id=None, persona=None, default_replica_id=None)
    assert caught.value.code == "replica_missing"
    assert str(caught.value) == (
        "No Tavus replica to use: set the job's replica_id, the persona's default_replica_id or"
        " TAVUS_DEFAULT_REPLICA_ID."
    )


@pytest.mark.parametrize(
    ("job", "persona", "default", "source"),
    [
        ("rgone", None, None, "from the job's replica_id"),
        (
            None,
            Persona(persona_id="p1", default_replica_id="rgone"),
            None,
            "from persona p1's default_replica_id",
        ),
        (None, None, "rgone", "from TAVUS_DEFAULT_REPLICA_ID"),
    ],
)
async def test_unknown_replica_names_its_source(
    fake: FakeTavus,
    client: TavusClient,
    job: str | None,
    persona: Persona | None,
    default: str | None,
    source: str,
) -> None:
    """An unknown replica is replica_not_found saying where the id came from."""
    fake.reply("GET", "/replicas/rgone", 400, bodies.INVALID_REPLICA)
    with pytest.raises(NotFoundError) as caught:
        await resolve_replica(
            client, job_replica_id=job, persona=persona, default_replica_id=default
        )
    assert caught.value.code == "replica_not_found"
    assert str(caught.value) == (
        f"replica rgone ({source}) does not exist on this Tavus account; list yours with"
        " `avatar-worker replicas list`"
    )


async def test_persona_id_in_the_replica_slot_is_pointed_out(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A ``p…`` id given as replica gets a hint that it looks like a persona id."""
    fake.reply("GET", "/replicas/pcb7a34da5fe", 400, bodies.INVALID_REPLICA)
    with pytest.raises(NotFoundError) as caught:
        await resolve_replica(
            client, job_replica_id="pcb7a34da5fe", persona=None, default_replica_id=None
        )
    assert "(it looks like a persona id)" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"replica_id": "r1", "status": "started", "training_progress": "40/100"},
            "replica r1 (from the job's replica_id) is still training (40/100); try again when it"
            " is ready",
        ),
        (
            {"replica_id": "r1", "status": "error", "error_message": "consent video missing"},
            "replica r1 (from the job's replica_id) failed training (consent video missing); train"
            " it again or use another replica",
        ),
        (
            {"replica_id": "r1", "status": "archived"},
            "replica r1 (from the job's replica_id) is not usable (status 'archived'); use a"
            " replica whose status is completed",
        ),
    ],
)
async def test_unusable_replica_says_why_and_is_not_cached(
    fake: FakeTavus, client: TavusClient, body: dict[str, str], message: str
) -> None:
    """A training or errored replica is replica_not_ready with its state; it is asked again next time."""
    fake.reply(
        "GET",
        "/replicas/r1",
        200,
        body,
    )
    fake.reply("GET", "/replicas/r1", 200, USABLE)
    with pytest.raises(ReplicaNotUsableError) as caught:
        await resolve_replica(client, job_replica_id="r1", persona=None, default_replica_id=None)
    assert (caught.value.code, str(caught.value)) == ("replica_not_ready", message)
    ready = await resolve_replica(
        client, job_replica_id="r1", persona=None, default_replica_id=None
    )
    assert ready.is_usable


async def test_replica_cache_expires(fake: FakeTavus, client: TavusClient) -> None:
    """A cached replica is asked for again once its TTL passed."""
    clock = Clock()
    cache = TTLCache(60.0, clock=clock)
    fake.reply(
        "GET",
        "/replicas/r1",
        200,
        USABLE,
    )
    fake.reply("GET", "/replicas/r1", 200, USABLE)
    for advance in (0.0, 30.0, 31.0):
        clock.now += advance
        await resolve_replica(
            client, job_replica_id="r1", persona=None, default_replica_id=None, cache=cache
        )
    assert len(fake.seen) == 2


DEFN = PersonaDefinition(persona_name="Coach", system_prompt="Be kind.", default_replica_id="r1")
TAGGED = "Coach [aw:" + DEFN.content_hash() + "]"


async def test_ensure_creates_once_and_reuses(fake: FakeTavus, client: TavusClient) -> None:
    """A new definition is created under a tagged name; the next ensure uses the cache."""
    fake.reply("GET", "/personas", 200, bodies.PERSONA_LIST | {"total_count": 1})
    fake.reply("POST", "/personas", 200, {"persona_id": "pnew", "persona_name": TAGGED})
    resolver = PersonaResolver(client)
    first = await resolver.ensure(DEFN)
    again = await resolver.ensure(DEFN)
    assert first.persona_id == again.persona_id == "pnew"
    assert fake.seen[0].url.params["persona_type"] == "user"
    assert fake.body(1) == {
        "persona_name": TAGGED,
        "system_prompt": "Be kind.",
        "default_replica_id": "r1",
    }
    assert first.default_replica_id == "r1"  # filled in from what was sent


async def test_ensure_finds_a_persona_another_worker_created(
    fake: FakeTavus, client: TavusClient
) -> None:
    """An existing persona with the definition's tag is reused, nothing is created."""
    existing = {"persona_id": "pold", "persona_name": TAGGED, "default_replica_id": "r1"}
    fake.reply("GET", "/personas", 200, {"data": [existing], "total_count": 1})
    persona = await PersonaResolver(client).ensure(DEFN)
    assert persona.persona_id == "pold"


async def test_concurrent_ensure_creates_at_most_one(fake: FakeTavus, client: TavusClient) -> None:
    """Ten concurrent ensure() calls for one definition make one lookup and one create."""

    async def slow_empty_list(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # let the other ensure() calls run meanwhile
        return httpx.Response(200, json={"data": [], "total_count": 0})

    fake.expect("GET", "/personas", slow_empty_list)
    fake.reply("POST", "/personas", 200, {"persona_id": "pnew", "persona_name": TAGGED})
    resolver = PersonaResolver(client)
    personas = await asyncio.gather(*(resolver.ensure(DEFN) for _ in range(10)))
    assert {p.persona_id for p in personas} == {"pnew"}
    assert [r.method for r in fake.seen] == ["GET", "POST"]


async def test_distinct_definitions_get_distinct_personas(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A changed system prompt is a new definition, hence a new persona."""
    other = DEFN.model_copy(update={"system_prompt": "Be brief."})
    fake.reply("GET", "/personas", 200, {"data": [], "total_count": 0})
    fake.reply("POST", "/personas", 200, {"persona_id": "pa", "persona_name": TAGGED})
    fake.reply("GET", "/personas", 200, {"data": [], "total_count": 0})
    fake.reply("POST", "/personas", 200, {"persona_id": "pb", "persona_name": "x"})
    resolver = PersonaResolver(client)
    assert (await resolver.ensure(DEFN)).persona_id == "pa"
    assert (await resolver.ensure(other)).persona_id == "pb"


async def test_rejected_definition_is_persona_invalid(fake: FakeTavus, client: TavusClient) -> None:
    """A definition Tavus refuses fails with persona_invalid naming the definition."""
    fake.reply("GET", "/personas", 200, {"data": [], "total_count": 0})
    fake.reply("POST", "/personas", 400, {"error": "system_prompt too long"})
    with pytest.raises(RequestRejectedError) as caught:
        await PersonaResolver(client).ensure(DEFN)
    assert caught.value.code == "persona_invalid"
    assert str(caught.value) == (
        "Tavus rejected the job's persona definition 'Coach' (Tavus rejected POST /v2/personas"
        " (400 system_prompt too long).); fix the job's persona object."
    )


async def test_get_caches_and_reports_unknown_personas(
    fake: FakeTavus, client: TavusClient
) -> None:
    """get() reads a persona once per TTL; an unknown id is persona_not_found."""
    fake.reply("GET", "/personas/pipecat0", 200, bodies.PIPECAT0_PERSONA)
    fake.reply("GET", "/personas/pgone", 400, bodies.INVALID_PERSONA)
    resolver = PersonaResolver(client)
    assert (await resolver.get("pipecat0")).persona_name == "Ari"
    assert (await resolver.get("pipecat0")).persona_name == "Ari"
    with pytest.raises(NotFoundError) as caught:
        await resolver.get("pgone")
    assert caught.value.code == "persona_not_found"


async def test_forget_drops_a_deleted_persona(fake: FakeTavus, client: TavusClient) -> None:
    """After forget(), ensure() looks the definition up again instead of trusting the cache."""
    fake.reply("GET", "/personas", 200, {"data": [], "total_count": 0})
    fake.reply("POST", "/personas", 200, {"persona_id": "pa", "persona_name": TAGGED})
    fake.reply("GET", "/personas", 200, {"data": [], "total_count": 0})
    fake.reply("POST", "/personas", 200, {"persona_id": "pb", "persona_name": TAGGED})
    resolver = PersonaResolver(client)
    await resolver.ensure(DEFN)
    resolver.forget("pa")
    assert (await resolver.ensure(DEFN)).persona_id == "pb"
