"""Tavus /v2/conversations as a client sees it: auth, create checks and shape, get, list, end,
delete, and the loopback room page."""

from __future__ import annotations

import re
from datetime import datetime

import httpx

from tavus.sim import (
    ANNA_REPLICA_ID,
    ERROR_REPLICA_ID,
    PIPECAT_PERSONA_ID,
    SALES_COACH_PERSONA_ID,
    TRAINING_REPLICA_ID,
    Simulator,
    decode_hs256,
)

CREATE_KEYS = {
    "conversation_id",
    "conversation_name",
    "conversation_url",
    "status",
    "callback_url",
    "created_at",
}


async def create(tavus: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await tavus.post("/conversations", json={"replica_id": ANNA_REPLICA_ID, **body})


async def test_missing_api_key_is_401_invalid_access_token(sim: Simulator) -> None:
    """A call without x-api-key gets 401 {"message": "Invalid access token"}."""
    async with httpx.AsyncClient(base_url=sim.tavus_base_url) as client:
        response = await client.get("/conversations")
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid access token"}


async def test_unknown_api_key_is_401_invalid_access_token(sim: Simulator) -> None:
    """A call with a key the simulator does not know gets the same 401 body."""
    async with httpx.AsyncClient(base_url=sim.tavus_base_url) as client:
        response = await client.post(
            "/conversations", json={"replica_id": ANNA_REPLICA_ID}, headers={"x-api-key": "nope"}
        )
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid access token"}
    assert sim.conversations == {}


async def test_create_returns_exactly_the_documented_shape(tavus: httpx.AsyncClient) -> None:
    """Create answers 200 with the six documented keys, a c+11-hex id and a µs timestamp."""
    response = await create(
        tavus, persona_id=PIPECAT_PERSONA_ID, conversation_name="Demo", callback_url="http://x/y"
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CREATE_KEYS
    assert re.fullmatch(r"c[0-9a-f]{11}", body["conversation_id"])
    assert body["status"] == "active"
    assert body["conversation_name"] == "Demo"
    assert body["callback_url"] == "http://x/y"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["created_at"])


async def test_conversation_url_serves_a_loopback_room_page(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """conversation_url points at the simulator and returns a small HTML page."""
    body = (await create(tavus)).json()
    assert body["conversation_url"] == f"{sim.base_url}/rooms/{body['conversation_id']}"
    page = await tavus.get(body["conversation_url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert body["conversation_id"] in page.text


async def test_every_documented_request_field_is_accepted_and_kept(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """A create using every documented field, properties included, succeeds and is stored as sent."""
    request = {
        "replica_id": ANNA_REPLICA_ID,
        "persona_id": SALES_COACH_PERSONA_ID,
        "audio_only": False,
        "callback_url": "http://127.0.0.1:9/hook",
        "conversation_name": "All fields",
        "conversational_context": "Practise objections.",
        "custom_greeting": "Hey there!",
        "enable_dynamic_greeting": False,
        "memory_stores": ["anna"],
        "document_ids": ["d1"],
        "document_tags": ["sales"],
        "document_retrieval_strategy": "quality",
        "test_mode": False,
        "require_auth": False,
        "max_participants": 2,
        "properties": {
            "max_call_duration": 1800,
            "participant_left_timeout": 60,
            "participant_absent_timeout": 120,
            "enable_recording": False,
            "enable_closed_captions": True,
            "apply_greenscreen": False,
            "language": "english",
        },
    }
    response = await tavus.post("/conversations", json=request)
    assert response.status_code == 200
    stored = sim.conversations[response.json()["conversation_id"]]
    assert stored.request == request
    assert stored.max_call_duration_s == 1800


async def test_pal_id_and_face_id_are_accepted_as_aliases(tavus: httpx.AsyncClient) -> None:
    """The 2026 names pal_id/face_id work on create like persona_id/replica_id."""
    response = await tavus.post(
        "/conversations", json={"face_id": ANNA_REPLICA_ID, "pal_id": PIPECAT_PERSONA_ID}
    )
    assert response.status_code == 200
    got = await tavus.get(f"/conversations/{response.json()['conversation_id']}")
    assert got.json()["replica_id"] == ANNA_REPLICA_ID
    assert got.json()["persona_id"] == PIPECAT_PERSONA_ID


async def test_replica_defaults_to_the_personas_default_replica(tavus: httpx.AsyncClient) -> None:
    """Without replica_id the persona's default_replica_id is used."""
    response = await tavus.post("/conversations", json={"persona_id": SALES_COACH_PERSONA_ID})
    assert response.status_code == 200
    got = await tavus.get(f"/conversations/{response.json()['conversation_id']}")
    assert got.json()["replica_id"] == "rfe12d8b9597"


async def test_no_replica_anywhere_is_400(tavus: httpx.AsyncClient) -> None:
    """A persona without a default replica and no replica_id gives 400 naming replica_id."""
    response = await tavus.post("/conversations", json={"persona_id": PIPECAT_PERSONA_ID})
    assert response.status_code == 400
    assert "replica_id" in response.json()["error"]


async def test_unknown_replica_is_400_invalid_replica_uuid(tavus: httpx.AsyncClient) -> None:
    """An unknown replica (e.g. a persona id in the replica slot) gives Invalid replica_uuid."""
    response = await tavus.post("/conversations", json={"replica_id": SALES_COACH_PERSONA_ID})
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid replica_uuid"}


async def test_unknown_persona_is_400_invalid_persona_id(tavus: httpx.AsyncClient) -> None:
    """An unknown persona on create gives 400 {"error": "Invalid persona_id"}."""
    response = await create(tavus, persona_id="p000000000000")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid persona_id"}


async def test_training_replica_is_400_saying_it_is_still_training(
    tavus: httpx.AsyncClient,
) -> None:
    """A replica with status started is refused with a message naming it and its progress."""
    response = await tavus.post("/conversations", json={"replica_id": TRAINING_REPLICA_ID})
    assert response.status_code == 400
    message = response.json()["error"]
    assert TRAINING_REPLICA_ID in message and "still training" in message and "40/100" in message


async def test_errored_replica_is_400_with_its_error_message(tavus: httpx.AsyncClient) -> None:
    """A replica with status error is refused with its training error message."""
    response = await tavus.post("/conversations", json={"replica_id": ERROR_REPLICA_ID})
    assert response.status_code == 400
    message = response.json()["error"]
    assert ERROR_REPLICA_ID in message and "failed training" in message
    assert "at least 1 minute" in message


async def test_bad_field_types_are_400(tavus: httpx.AsyncClient) -> None:
    """Wrongly typed documented fields and a non-object body give 400 with an error message."""
    for body in (
        {"replica_id": ANNA_REPLICA_ID, "test_mode": "yes"},
        {"replica_id": ANNA_REPLICA_ID, "properties": {"max_call_duration": "long"}},
        {"replica_id": ANNA_REPLICA_ID, "max_participants": 1},
        [ANNA_REPLICA_ID],
    ):
        response = await tavus.post("/conversations", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]


async def test_concurrency_cap_gives_400_with_the_real_message(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """Past the cap of active non-test conversations, create is 400 (not 429) with Tavus's text."""
    sim.faults.set_concurrency_cap(1)
    assert (await create(tavus)).status_code == 200
    refused = await create(tavus)
    assert refused.status_code == 400
    assert refused.json() == {"message": "User has reached maximum concurrent conversations"}
    assert (await create(tavus, test_mode=True)).status_code == 200


async def test_ending_a_conversation_frees_its_slot(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """After end, a capped account can create again."""
    sim.faults.set_concurrency_cap(1)
    first = (await create(tavus)).json()["conversation_id"]
    await tavus.post(f"/conversations/{first}/end")
    assert (await create(tavus)).status_code == 200


async def test_out_of_credits_gives_402(sim: Simulator, tavus: httpx.AsyncClient) -> None:
    """With credits exhausted, create is 402 with Tavus's message and nothing is created."""
    sim.faults.set_out_of_credits(True)
    response = await create(tavus)
    assert response.status_code == 402
    assert response.json() == {"message": "The user is out of conversational credits"}
    assert sim.conversations == {}


async def test_test_mode_is_ended_and_takes_no_slot(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """test_mode creates an already-ended conversation that does not count against the cap."""
    sim.faults.set_concurrency_cap(0)
    response = await create(tavus, test_mode=True)
    assert response.status_code == 200
    assert response.json()["status"] == "ended"
    listed = await tavus.get("/conversations", params={"status": "active"})
    assert listed.json() == {"data": [], "total_count": 0}


async def test_require_auth_adds_a_meeting_token(tavus: httpx.AsyncClient) -> None:
    """require_auth adds a JWT meeting_token valid for participant_absent_timeout seconds."""
    response = await create(tavus, require_auth=True, properties={"participant_absent_timeout": 60})
    body = response.json()
    assert set(body) == CREATE_KEYS | {"meeting_token"}
    claims = decode_hs256(body["meeting_token"], "tavus-sim-room-secret")
    assert claims["r"] == body["conversation_id"]
    assert claims["exp"] - claims["iat"] == 60


async def test_get_returns_the_documented_record(tavus: httpx.AsyncClient) -> None:
    """GET has ids, status and µs timestamps, and no events unless verbose."""
    created = (await create(tavus, persona_id=PIPECAT_PERSONA_ID)).json()
    got = (await tavus.get(f"/conversations/{created['conversation_id']}")).json()
    assert got["replica_id"] == ANNA_REPLICA_ID
    assert got["persona_id"] == PIPECAT_PERSONA_ID
    assert got["status"] == "active"
    assert "events" not in got
    datetime.strptime(got["updated_at"], "%Y-%m-%dT%H:%M:%S.%fZ")


async def test_unknown_or_malformed_conversation_id_is_400(tavus: httpx.AsyncClient) -> None:
    """Get, end and delete of an unknown or malformed id give 400 Invalid conversation_id."""
    for method, path in (
        ("GET", "/conversations/c00000000000"),
        ("GET", "/conversations/bad%20id!"),
        ("POST", "/conversations/c00000000000/end"),
        ("DELETE", "/conversations/c00000000000"),
    ):
        response = await tavus.request(method, path)
        assert response.status_code == 400, path
        assert response.json() == {"error": "Invalid conversation_id"}


async def test_list_pages_from_one_and_counts_all_matches(tavus: httpx.AsyncClient) -> None:
    """The list is {"data", "total_count"}, newest first, limit defaults to 10, page is 1-based."""
    ids = [(await create(tavus)).json()["conversation_id"] for _ in range(12)]
    first = (await tavus.get("/conversations")).json()
    assert set(first) == {"data", "total_count"}
    assert len(first["data"]) == 10 and first["total_count"] == 12
    assert first["data"][0]["conversation_id"] == ids[-1]
    second = (await tavus.get("/conversations", params={"page": 2})).json()
    seen = {c["conversation_id"] for c in first["data"] + second["data"]}
    assert seen == set(ids)


async def test_list_filters_on_status(tavus: httpx.AsyncClient) -> None:
    """?status=active and ?status=ended return only conversations in that status."""
    ended = (await create(tavus)).json()["conversation_id"]
    active = (await create(tavus)).json()["conversation_id"]
    await tavus.post(f"/conversations/{ended}/end")
    active_list = (await tavus.get("/conversations", params={"status": "active"})).json()
    ended_list = (await tavus.get("/conversations", params={"status": "ended"})).json()
    assert [c["conversation_id"] for c in active_list["data"]] == [active]
    assert [c["conversation_id"] for c in ended_list["data"]] == [ended]
    assert active_list["total_count"] == ended_list["total_count"] == 1


async def test_end_is_200_idempotent_and_records_the_reason(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """End answers 200 twice and the conversation is ended by end_conversation_endpoint_hit."""
    conversation_id = (await create(tavus)).json()["conversation_id"]
    assert (await tavus.post(f"/conversations/{conversation_id}/end")).status_code == 200
    assert (await tavus.post(f"/conversations/{conversation_id}/end")).status_code == 200
    got = (await tavus.get(f"/conversations/{conversation_id}", params={"verbose": "true"})).json()
    assert got["status"] == "ended"
    shutdowns = [e for e in got["events"] if e["event_type"] == "system.shutdown"]
    assert len(shutdowns) == 1
    assert shutdowns[0]["properties"]["shutdown_reason"] == "end_conversation_endpoint_hit"
    assert sim.conversations[conversation_id].shutdown_reason == "end_conversation_endpoint_hit"


async def test_delete_is_204_and_the_id_becomes_invalid(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """DELETE (hard or not) answers 204 with no body, ends the call, and later gets are 400."""
    conversation_id = (await create(tavus)).json()["conversation_id"]
    response = await tavus.delete(f"/conversations/{conversation_id}", params={"hard": "true"})
    assert response.status_code == 204
    assert response.content == b""
    assert (await tavus.get(f"/conversations/{conversation_id}")).status_code == 400
    assert sim.conversations[conversation_id].status == "ended"
    assert (await tavus.get("/conversations")).json()["total_count"] == 0
