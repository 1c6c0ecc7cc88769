"""Every TavusClient method against the project's Tavus simulator, over real HTTP."""

from __future__ import annotations

import argparse
import io
from collections.abc import AsyncIterator

import pytest

from tavus._http import RetryPolicy
from tavus.client import TavusClient
from tavus.errors import (
    AuthError,
    ConcurrencyLimitError,
    NotFoundError,
    OutOfCreditsError,
    ReplicaNotUsableError,
    ServerError,
    UnexpectedResponseError,
)
from tavus.models import (
    ConversationProperties,
    CreateConversationRequest,
    CreatePersonaRequest,
    PersonaDefinition,
)
from tavus.resolve import PersonaResolver, resolve_replica
from tavus.sim import (
    ANNA_REPLICA_ID,
    ERROR_REPLICA_ID,
    PIPECAT_PERSONA_ID,
    TRAINING_REPLICA_ID,
    Simulator,
)
from worker.admin import add_admin_parsers, run_admin

KEY = "sim-key-0123456789"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(tavus_api_keys={KEY}).running(host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[TavusClient]:
    async with TavusClient(
        api_key=KEY, base_url=sim.tavus_base_url, retry=RetryPolicy.instant(attempts=3)
    ) as tavus:
        yield tavus


def _request(name: str | None = None, **kw: object) -> CreateConversationRequest:
    return CreateConversationRequest(
        replica_id=ANNA_REPLICA_ID,
        persona_id=PIPECAT_PERSONA_ID,
        conversation_name=name,
        properties=ConversationProperties(max_call_duration=600, participant_left_timeout=0),
        **kw,  # type: ignore[arg-type]
    )


async def test_conversation_lifecycle(sim: Simulator, client: TavusClient) -> None:
    """Create, get (verbose), list, iterate, find by name, end twice and delete a conversation."""
    created = await client.create_conversation(_request("job-1"))
    assert created.is_active and created.conversation_url
    assert created.created_at is not None

    got = await client.get_conversation(created.conversation_id, verbose=True)
    assert got.conversation_id == created.conversation_id

    page = await client.list_conversations(status="active", limit=10)
    assert [c.conversation_id for c in page.data] == [created.conversation_id]
    assert page.total_count == 1
    assert [c.conversation_id async for c in client.iter_conversations(page_size=1)] == [
        created.conversation_id
    ]
    found = await client.find_conversations_by_name("job-1", status="active")
    assert [c.conversation_id for c in found] == [created.conversation_id]

    await client.end_conversation(created.conversation_id)
    await client.end_conversation(created.conversation_id)  # idempotent
    ended = await client.get_conversation(created.conversation_id, verbose=True)
    assert ended.status == "ended"
    assert ended.shutdown_reason == "end_conversation_endpoint_hit"

    await client.delete_conversation(created.conversation_id, hard=True)
    with pytest.raises(NotFoundError) as caught:
        await client.get_conversation(created.conversation_id)
    assert caught.value.code == "conversation_not_found"


async def test_iteration_walks_several_pages(client: TavusClient) -> None:
    """Five test-mode conversations come back in full through pages of two."""
    for n in range(5):
        await client.create_conversation(_request(f"t{n}", test_mode=True))
    names = {c.conversation_name async for c in client.iter_conversations(page_size=2)}
    assert names == {f"t{n}" for n in range(5)}


async def test_persona_lifecycle(client: TavusClient) -> None:
    """Create, get, list, iterate, patch (changed and unchanged) and delete a persona."""
    persona = await client.create_persona(
        CreatePersonaRequest(
            persona_name="Coach",
            system_prompt="Be kind.",
            default_replica_id=ANNA_REPLICA_ID,
            layers={"llm": {"model": "tavus-gpt-oss"}},
        )
    )
    got = await client.get_persona(persona.persona_id)
    assert (got.persona_name, got.default_replica_id) == ("Coach", ANNA_REPLICA_ID)

    user = await client.list_personas(persona_type="user")
    assert [p.persona_id for p in user.data] == [persona.persona_id]
    system = [p.persona_id async for p in client.iter_personas(persona_type="system", page_size=2)]
    assert PIPECAT_PERSONA_ID in system

    patched = await client.patch_persona(
        persona.persona_id, [{"op": "replace", "path": "/system_prompt", "value": "Be brief."}]
    )
    assert patched is not None and patched.system_prompt == "Be brief."
    unchanged = await client.patch_persona(
        persona.persona_id, [{"op": "replace", "path": "/system_prompt", "value": "Be brief."}]
    )
    assert unchanged is None

    await client.delete_persona(persona.persona_id)
    with pytest.raises(NotFoundError) as caught:
        await client.get_persona(persona.persona_id)
    assert caught.value.code == "persona_not_found"


async def test_pipecat0_is_read_flat(client: TavusClient) -> None:
    """The stock ``pipecat0`` echo persona is read as the flat record Tavus sends."""
    persona = await client.get_persona(PIPECAT_PERSONA_ID)
    assert (persona.persona_name, persona.pipeline_mode) == ("Ari", "echo")


async def test_replicas(client: TavusClient) -> None:
    """List (by type, verbose), iterate and get replicas; stock Anna is usable."""
    system = await client.list_replicas(replica_type="system", verbose=True, limit=50)
    assert ANNA_REPLICA_ID in {r.replica_id for r in system.data}
    every = [r.replica_id async for r in client.iter_replicas(page_size=2)]
    assert {ANNA_REPLICA_ID, TRAINING_REPLICA_ID, ERROR_REPLICA_ID} <= set(every)
    anna = await client.get_replica(ANNA_REPLICA_ID, verbose=True)
    assert anna.is_usable


async def test_resolve_replica_against_seeded_states(client: TavusClient) -> None:
    """The seeded training and failed replicas give replica_not_ready with their state."""
    with pytest.raises(ReplicaNotUsableError) as training:
        await resolve_replica(
            client, job_replica_id=TRAINING_REPLICA_ID, persona=None, default_replica_id=None
        )
    assert "is still training (40/100)" in str(training.value)
    with pytest.raises(ReplicaNotUsableError) as failed:
        await resolve_replica(
            client, job_replica_id=None, persona=None, default_replica_id=ERROR_REPLICA_ID
        )
    assert "failed training (The training video must be at least 1 minute long.)" in str(
        failed.value
    )
    with pytest.raises(NotFoundError) as missing:
        await resolve_replica(
            client, job_replica_id="r000000000000", persona=None, default_replica_id=None
        )
    assert missing.value.code == "replica_not_found"


async def test_persona_resolver_reuses_across_resolvers(client: TavusClient) -> None:
    """Two resolvers (two workers) ensuring one definition share one Tavus persona."""
    defn = PersonaDefinition(persona_name="Coach", system_prompt="Be kind.")
    first = await PersonaResolver(client).ensure(defn)
    second = await PersonaResolver(client).ensure(defn)
    assert first.persona_id == second.persona_id
    names = [p.persona_name async for p in client.iter_personas(persona_type="user")]
    assert names == [f"Coach [aw:{defn.content_hash()}]"]


async def test_wrong_key_is_auth_error(sim: Simulator) -> None:
    """The simulator's 401 becomes tavus_auth with the readable message."""
    async with TavusClient(api_key="wrong-key-xyz", base_url=sim.tavus_base_url) as client:
        with pytest.raises(AuthError) as caught:
            await client.list_replicas()
    assert str(caught.value).startswith("TAVUS_API_KEY was rejected by Tavus (401")


async def test_account_limits(sim: Simulator, client: TavusClient) -> None:
    """The concurrency cap and exhausted credits surface as their own errors."""
    sim.faults.set_concurrency_cap(1)
    await client.create_conversation(_request("a"))
    with pytest.raises(ConcurrencyLimitError):
        await client.create_conversation(_request("b"))
    sim.faults.set_out_of_credits(True)
    with pytest.raises(OutOfCreditsError):
        await client.create_conversation(_request("c"))


async def test_unknown_ids_on_create(client: TavusClient) -> None:
    """A persona id in the replica slot is replica_not_found with the persona-id hint."""
    with pytest.raises(NotFoundError) as caught:
        await client.create_conversation(CreateConversationRequest(replica_id=PIPECAT_PERSONA_ID))
    assert caught.value.code == "replica_not_found"


async def test_5xx_is_retried_on_reads(sim: Simulator, client: TavusClient) -> None:
    """Two 503s on a read are retried; the third attempt succeeds."""
    sim.faults.fail_next("GET /v2/replicas/{id}", n=2, status=503)
    assert (await client.get_replica(ANNA_REPLICA_ID)).is_usable
    assert len(sim.calls_to("GET /v2/replicas/{id}")) == 3


async def test_5xx_on_unnamed_create_is_not_retried(sim: Simulator, client: TavusClient) -> None:
    """An unnamed create that got a 503 is sent once: it may have been created."""
    sim.faults.fail_next("POST /v2/conversations", n=1, status=503)
    with pytest.raises(ServerError):
        await client.create_conversation(_request())
    assert len(sim.calls_to("POST /v2/conversations")) == 1


async def test_dropped_named_create_is_checked_then_retried(
    sim: Simulator, client: TavusClient
) -> None:
    """A dropped create is looked up by name, found missing, and sent again: one conversation."""
    sim.faults.drop_next("POST /v2/conversations", n=1)
    created = await client.create_conversation(_request("job-drop"))
    active = await client.find_conversations_by_name("job-drop", status="active")
    assert [c.conversation_id for c in active] == [created.conversation_id]
    seen = [(c.method, c.status) for c in sim.calls if c.path == "/v2/conversations"]
    assert seen[:3] == [("POST", None), ("GET", 200), ("POST", 200)]


async def test_wrong_base_url_is_readable(sim: Simulator) -> None:
    """A base URL without /v2 gives a short message naming TAVUS_BASE_URL."""
    base = sim.tavus_base_url.removesuffix("/v2") + "/v3"
    async with TavusClient(api_key=KEY, base_url=base, retry=RetryPolicy.instant()) as client:
        with pytest.raises(UnexpectedResponseError) as caught:
            await client.list_replicas()
    assert str(caught.value) == (
        'Tavus answered GET /v3/replicas with 404 text/plain "404: Not Found" where a JSON body'
        f" was expected; check TAVUS_BASE_URL (now {base})."
    )


async def test_admin_ends_all_active(sim: Simulator, client: TavusClient) -> None:
    """``conversations end --all-active`` leaves no active conversation behind."""
    for name in ("x", "y"):
        await client.create_conversation(_request(name))
    parser = argparse.ArgumentParser()
    add_admin_parsers(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    code = await run_admin(parser.parse_args(["conversations", "end", "--all-active"]), client, out)
    assert code == 0 and out.getvalue().count("ended conversation") == 2
    assert (await client.list_conversations(status="active")).data == []
