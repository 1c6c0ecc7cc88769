"""Contract tests: every client method against the bodies recorded in the Tavus reference."""

from __future__ import annotations

from datetime import UTC, datetime

import bodies
import httpx
import pytest
from fake_tavus import FakeTavus

from tavus.client import TavusClient
from tavus.errors import NotFoundError, RequestRejectedError
from tavus.models import (
    ConversationProperties,
    CreateConversationRequest,
    CreatePersonaRequest,
)


async def test_create_conversation_sends_documented_fields_and_parses_reply(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Create posts only the fields set (properties nested, no nulls) and returns id and URL."""
    fake.reply("POST", "/conversations", 200, bodies.CREATED_CONVERSATION)
    req = CreateConversationRequest(
        replica_id="rfe12d8b9597",
        persona_id="pdced222244b",
        conversation_name="Improve Sales Technique",
        custom_greeting="Hey there!",
        properties=ConversationProperties(max_call_duration=1800, language="english"),
    )
    conversation = await client.create_conversation(req)
    assert fake.body() == {
        "replica_id": "rfe12d8b9597",
        "persona_id": "pdced222244b",
        "conversation_name": "Improve Sales Technique",
        "custom_greeting": "Hey there!",
        "properties": {"max_call_duration": 1800, "language": "english"},
    }
    assert conversation.conversation_id == "ca4301628cb9"
    assert conversation.conversation_url == "https://tavus.daily.co/ca4301628cb9"
    assert conversation.is_active
    assert conversation.created_at == datetime(2025, 5, 13, 6, 42, 58, 291561, tzinfo=UTC)


async def test_requests_carry_the_api_key_header(fake: FakeTavus, client: TavusClient) -> None:
    """Every request authenticates with ``x-api-key`` (no Bearer scheme)."""
    fake.reply("GET", "/replicas/r783537ef5", 200, bodies.REPLICA)
    await client.get_replica("r783537ef5")
    assert fake.seen[0].headers["x-api-key"] == "tvs-secret-0123456789abcdef"
    assert "authorization" not in fake.seen[0].headers


async def test_get_conversation_verbose_reads_events_and_shutdown_reason(
    fake: FakeTavus, client: TavusClient
) -> None:
    """``verbose=True`` asks for events and exposes the shutdown reason and transcript."""
    fake.reply("GET", "/conversations/ca4301628cb9", 200, bodies.VERBOSE_CONVERSATION)
    conversation = await client.get_conversation("ca4301628cb9", verbose=True)
    assert fake.seen[0].url.params["verbose"] == "true"
    assert conversation.status == "ended"
    assert conversation.shutdown_reason == "participant_left_timeout"
    assert conversation.events is not None
    assert conversation.events[2].properties["transcript"][1] == {"role": "user", "content": "Hi."}


async def test_list_conversations_reads_data_and_total_count(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A list is ``{"data": [...], "total_count": N}``; filters go in the query string."""
    fake.reply("GET", "/conversations", 200, bodies.CONVERSATION_LIST)
    page = await client.list_conversations(status="active", limit=10, page=2)
    assert dict(fake.seen[0].url.params) == {"status": "active", "limit": "10", "page": "2"}
    assert page.total_count == 123
    assert [c.conversation_id for c in page.data] == ["ca4301628cb9"]


def _conversations(first: int, count: int) -> list[dict[str, object]]:
    return [
        {"conversation_id": f"c{i:011x}", "status": "active"} for i in range(first, first + count)
    ]


async def test_iter_conversations_stops_on_a_short_page(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Iteration walks pages 1, 2, … and stops after the first page shorter than the page size."""
    fake.reply("GET", "/conversations", 200, {"data": _conversations(0, 2), "total_count": None})
    fake.reply("GET", "/conversations", 200, {"data": _conversations(2, 1)})
    ids = [c.conversation_id async for c in client.iter_conversations(page_size=2)]
    assert len(ids) == 3
    assert [r.url.params["page"] for r in fake.seen] == ["1", "2"]


async def test_iter_conversations_stops_at_total_count(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Iteration stops once ``total_count`` items arrived, without asking for an empty page."""
    fake.reply("GET", "/conversations", 200, {"data": _conversations(0, 2), "total_count": 4})
    fake.reply("GET", "/conversations", 200, {"data": _conversations(2, 2), "total_count": 4})
    ids = [c.conversation_id async for c in client.iter_conversations(page_size=2)]
    assert len(ids) == 4


async def test_find_conversations_by_name_filters_on_the_name(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Only conversations whose ``conversation_name`` equals the name are returned."""
    data = [
        {"conversation_id": "c1", "conversation_name": "job-1", "status": "active"},
        {"conversation_id": "c2", "conversation_name": "job-2", "status": "active"},
    ]
    fake.reply("GET", "/conversations", 200, {"data": data, "total_count": 2})
    found = await client.find_conversations_by_name("job-2", status="active")
    assert [c.conversation_id for c in found] == ["c2"]
    assert fake.seen[0].url.params["status"] == "active"


@pytest.mark.parametrize(
    "answer", [httpx.Response(200), httpx.Response(200, json={}), httpx.Response(200, text="OK")]
)
async def test_end_conversation_ignores_the_body(
    fake: FakeTavus, client: TavusClient, answer: httpx.Response
) -> None:
    """End succeeds on any 200 body (none, ``{}``, text): the body is undocumented."""
    fake.expect("POST", "/conversations/ca4301628cb9/end", answer)
    assert await client.end_conversation("ca4301628cb9") is None


async def test_delete_conversation_hard_is_a_query_flag_and_204(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Hard delete sends ``?hard=true`` and accepts 204 No Content."""
    fake.reply("DELETE", "/conversations/ca4301628cb9", 204)
    await client.delete_conversation("ca4301628cb9", hard=True)
    assert fake.seen[0].url.params["hard"] == "true"


async def test_ids_are_escaped_into_one_path_segment(fake: FakeTavus, client: TavusClient) -> None:
    """An id with slashes cannot reach another endpoint: it stays one escaped path segment."""
    fake.expect(
        "GET", "/conversations/..%2Fpersonas", httpx.Response(400, json=bodies.INVALID_CONVERSATION)
    )
    with pytest.raises(NotFoundError):
        await client.get_conversation("../personas")


async def test_unknown_conversation_is_a_400_not_found(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Tavus answers unknown ids with 400 ``{"error": "Invalid conversation_id"}``: not found."""
    fake.reply("POST", "/conversations/cdeadbeef000/end", 400, bodies.INVALID_CONVERSATION)
    with pytest.raises(NotFoundError) as caught:
        await client.end_conversation("cdeadbeef000")
    assert caught.value.code == "conversation_not_found"


async def test_create_persona_sends_layers_and_parses_short_reply(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Create persona posts layers as given and reads the short ``{persona_id, …}`` reply."""
    fake.reply("POST", "/personas", 200, bodies.CREATED_PERSONA)
    req = CreatePersonaRequest(
        persona_name="Interviewer",
        pipeline_mode="full",
        system_prompt="You are a structured, friendly interviewer...",
        default_replica_id="r90bbd427f71",
        layers={"llm": {"model": "tavus-gpt-oss", "speculative_inference": True}},
    )
    persona = await client.create_persona(req)
    assert fake.body()["layers"] == {
        "llm": {"model": "tavus-gpt-oss", "speculative_inference": True}
    }
    assert "context" not in fake.body()
    assert persona.persona_id == "p5317866a1b2"
    assert persona.created_at == datetime(2025, 5, 13, 6, 40, tzinfo=UTC)


async def test_get_persona_reads_the_flat_record(fake: FakeTavus, client: TavusClient) -> None:
    """Get persona returns a flat object (the real ``pipecat0`` record), not the documented list."""
    fake.reply("GET", "/personas/pipecat0", 200, bodies.PIPECAT0_PERSONA)
    persona = await client.get_persona("pipecat0")
    assert (persona.persona_name, persona.pipeline_mode, persona.context) == ("Ari", "echo", None)
    assert persona.layers is not None
    assert persona.layers["transport"]["input_settings"] == {"microphone": "disabled"}


async def test_get_persona_also_reads_the_documented_envelope(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Should Tavus ever send the documented ``{"data": [persona]}``, it is unwrapped."""
    fake.reply("GET", "/personas/pipecat0", 200, {"data": [bodies.PIPECAT0_PERSONA]})
    assert (await client.get_persona("pipecat0")).persona_name == "Ari"


async def test_list_personas_by_type(fake: FakeTavus, client: TavusClient) -> None:
    """Listing personas passes ``persona_type`` and reads the page."""
    fake.reply("GET", "/personas", 200, bodies.PERSONA_LIST)
    page = await client.list_personas(persona_type="system")
    assert fake.seen[0].url.params["persona_type"] == "system"
    assert page.data[0].default_replica_id == "r79e1c033f"
    assert page.total_count == 123


async def test_patch_persona_304_means_no_change(fake: FakeTavus, client: TavusClient) -> None:
    """A patch that changes nothing gets 304 and returns None."""
    fake.reply("PATCH", "/personas/p5317866a1b2", 304, bodies.NO_CHANGES)
    ops = [{"op": "replace", "path": "/system_prompt", "value": "same"}]
    assert await client.patch_persona("p5317866a1b2", ops) is None
    assert fake.body() == ops


async def test_patch_persona_returns_the_updated_persona(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A 200 with a persona body returns it; an empty 200 re-reads the persona."""
    updated = {**bodies.PERSONA_LIST["data"][0], "system_prompt": "calm"}
    fake.reply("PATCH", "/personas/p5317866a1b2", 200, updated)
    fake.reply("PATCH", "/personas/p5317866a1b2", 200)
    fake.reply("GET", "/personas/p5317866a1b2", 200, updated)
    ops = [{"op": "replace", "path": "/system_prompt", "value": "calm"}]
    first = await client.patch_persona("p5317866a1b2", ops)
    second = await client.patch_persona("p5317866a1b2", ops)
    assert first is not None and first.system_prompt == "calm"
    assert second is not None and second.system_prompt == "calm"


async def test_patch_persona_bad_patch_is_rejected(fake: FakeTavus, client: TavusClient) -> None:
    """A malformed patch (422, message under ``message``) is rejected, quoting Tavus."""
    fake.reply("PATCH", "/personas/p5317866a1b2", 422, bodies.BAD_PATCH)
    with pytest.raises(RequestRejectedError) as caught:
        await client.patch_persona("p5317866a1b2", [{"op": "bogus"}])
    assert str(caught.value) == (
        "Tavus rejected PATCH /v2/personas/p5317866a1b2 (422 Invalid JSON patch format)."
    )


async def test_delete_persona_accepts_204(fake: FakeTavus, client: TavusClient) -> None:
    """Delete persona accepts 204 No Content."""
    fake.reply("DELETE", "/personas/p5317866a1b2", 204)
    assert await client.delete_persona("p5317866a1b2") is None


async def test_list_replicas_with_type_and_verbose(fake: FakeTavus, client: TavusClient) -> None:
    """Listing replicas passes ``replica_type`` and ``verbose`` and reads usable status."""
    fake.reply("GET", "/replicas", 200, bodies.REPLICA_LIST)
    page = await client.list_replicas(replica_type="system", verbose=True)
    assert dict(fake.seen[0].url.params) == {
        "replica_type": "system",
        "limit": "10",
        "page": "1",
        "verbose": "true",
    }
    assert page.data[0].replica_name == "Anna"
    assert page.data[0].is_usable


async def test_iter_replicas_and_personas_walk_pages(fake: FakeTavus, client: TavusClient) -> None:
    """iter_replicas and iter_personas return every item of a one-page listing."""
    fake.reply("GET", "/replicas", 200, bodies.REPLICA_LIST)
    fake.reply("GET", "/personas", 200, bodies.PERSONA_LIST)
    replicas = [r.replica_id async for r in client.iter_replicas()]
    personas = [p.persona_id async for p in client.iter_personas()]
    assert (replicas, personas) == (["r90bbd427f71"], ["p5317866a1b2"])


async def test_get_replica_reads_training_fields(fake: FakeTavus, client: TavusClient) -> None:
    """Get replica reads status, progress and a null error_message."""
    fake.reply("GET", "/replicas/r783537ef5", 200, bodies.REPLICA)
    replica = await client.get_replica("r783537ef5")
    assert (replica.status, replica.training_progress, replica.error_message) == (
        "completed",
        "100/100",
        None,
    )


async def test_unknown_response_fields_are_kept(fake: FakeTavus, client: TavusClient) -> None:
    """Fields Tavus adds later (``pal_id``, ``model_name``…) neither fail nor get lost."""
    fake.reply(
        "GET",
        "/replicas/r783537ef5",
        200,
        {**bodies.REPLICA, "model_name": "phoenix-4", "brand_new": {"x": 1}},
    )
    replica = await client.get_replica("r783537ef5")
    assert replica.model_name == "phoenix-4"
    assert replica.model_extra == {"brand_new": {"x": 1}}


@pytest.mark.parametrize("created_at", ["", "<string>", None, "not a date"])
async def test_odd_timestamps_become_none(
    fake: FakeTavus, client: TavusClient, created_at: object
) -> None:
    """Blank and placeholder timestamps from the docs parse as None instead of failing."""
    fake.reply("GET", "/personas/p1", 200, {"persona_id": "p1", "created_at": created_at})
    assert (await client.get_persona("p1")).created_at is None


async def test_iteration_rejects_a_zero_page_size(client: TavusClient) -> None:
    """A page size below 1 is refused before any request is sent."""
    with pytest.raises(ValueError, match="page_size must be at least 1"):
        _ = [c async for c in client.iter_conversations(page_size=0)]
