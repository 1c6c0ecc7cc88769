"""Tavus personas and replicas as a client sees them: list shapes, the flat persona record,
RFC 6902 patches (200/304/422), 204 deletes and the 400 Invalid-id errors."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tavus.sim import (
    ANNA_REPLICA_ID,
    ERROR_REPLICA_ID,
    PIPECAT_PERSONA_ID,
    SALES_COACH_PERSONA_ID,
    TRAINING_REPLICA_ID,
    Simulator,
)

PIPECAT0 = {
    "persona_id": "pipecat0",
    "persona_name": "Ari",
    "pipeline_mode": "echo",
    "system_prompt": " ",
    "context": None,
    "default_replica_id": None,
    "layers": {
        "transport": {
            "room_settings": {
                "enable_chat": True,
                "start_audio_off": False,
                "start_video_off": False,
                "enable_people_ui": True,
                "enable_network_ui": True,
                "enable_noise_cancellation_ui": True,
            },
            "input_settings": {"microphone": "disabled"},
        }
    },
    "created_at": "2024-10-18T23:20:28.943Z",
    "updated_at": "2024-10-18T23:20:29.005Z",
}
MS_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


async def create_persona(tavus: httpx.AsyncClient, **body: Any) -> httpx.Response:
    defaults = {"persona_name": "Coach", "system_prompt": "You coach.", "pipeline_mode": "full"}
    return await tavus.post("/personas", json={**defaults, **body})


async def test_replica_list_is_data_and_total_count(sim: Simulator) -> None:
    """`curl -H 'x-api-key: k' HOST/v2/replicas` gives {"data": [...], "total_count": N}."""
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{sim.tavus_base_url}/replicas", headers={"x-api-key": "test-tavus-key"}
        )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "total_count"}
    assert body["total_count"] == len(sim.replicas) == len(body["data"])
    anna = next(r for r in body["data"] if r["replica_id"] == ANNA_REPLICA_ID)
    assert anna["replica_name"] == "Anna" and anna["status"] == "completed"
    assert set(anna) == {
        "replica_id",
        "replica_name",
        "thumbnail_video_url",
        "training_progress",
        "status",
        "created_at",
    }
    assert re.fullmatch(MS_TIMESTAMP, anna["created_at"])


async def test_replica_list_filters_and_verbose(tavus: httpx.AsyncClient) -> None:
    """replica_type filters stock vs user replicas, replica_ids picks ids, verbose adds the type."""
    users = (await tavus.get("/replicas", params={"replica_type": "user"})).json()
    assert {r["replica_id"] for r in users["data"]} == {TRAINING_REPLICA_ID, ERROR_REPLICA_ID}
    picked = await tavus.get(
        "/replicas",
        params={"replica_ids": f"{ANNA_REPLICA_ID},{ERROR_REPLICA_ID}", "verbose": "true"},
    )
    types = {r["replica_id"]: r["replica_type"] for r in picked.json()["data"]}
    assert types == {ANNA_REPLICA_ID: "system", ERROR_REPLICA_ID: "user"}
    page = (await tavus.get("/replicas", params={"limit": 2, "page": 2})).json()
    assert len(page["data"]) == 2 and page["total_count"] > 2


async def test_get_replica_returns_status_and_training_details(tavus: httpx.AsyncClient) -> None:
    """GET /replicas/{id} shows the training replica at 40/100 and the failed one's error."""
    training = (await tavus.get(f"/replicas/{TRAINING_REPLICA_ID}")).json()
    assert training["status"] == "started" and training["training_progress"] == "40/100"
    failed = (await tavus.get(f"/replicas/{ERROR_REPLICA_ID}")).json()
    assert failed["status"] == "error" and failed["error_message"]


async def test_unknown_replica_is_400_invalid_replica_id(tavus: httpx.AsyncClient) -> None:
    """GET of an unknown replica gives 400 {"error": "Invalid replica_id"}."""
    response = await tavus.get("/replicas/r000000000000")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid replica_id"}


async def test_pipecat0_is_the_exact_flat_record(tavus: httpx.AsyncClient) -> None:
    """GET /personas/pipecat0 returns Tavus's real flat record, not a data wrapper."""
    response = await tavus.get(f"/personas/{PIPECAT_PERSONA_ID}")
    assert response.status_code == 200
    assert response.json() == PIPECAT0


async def test_create_persona_returns_id_name_and_created_at(tavus: httpx.AsyncClient) -> None:
    """Create answers 200 with persona_id (p+11 hex), persona_name and a ms created_at."""
    response = await create_persona(tavus, default_replica_id=ANNA_REPLICA_ID)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"persona_id", "persona_name", "created_at"}
    assert re.fullmatch(r"p[0-9a-f]{11}", body["persona_id"])
    assert re.fullmatch(MS_TIMESTAMP, body["created_at"])
    got = (await tavus.get(f"/personas/{body['persona_id']}")).json()
    assert got["default_replica_id"] == ANNA_REPLICA_ID and got["system_prompt"] == "You coach."


async def test_create_persona_validation(tavus: httpx.AsyncClient) -> None:
    """A bad default replica is Invalid replica_uuid; full pipeline without a prompt is 400."""
    bad_replica = await create_persona(tavus, default_replica_id="r000000000000")
    assert bad_replica.status_code == 400
    assert bad_replica.json() == {"error": "Invalid replica_uuid"}
    no_prompt = await tavus.post("/personas", json={"persona_name": "x"})
    assert no_prompt.status_code == 400
    assert "system_prompt" in no_prompt.json()["error"]
    echo = await tavus.post("/personas", json={"persona_name": "e", "pipeline_mode": "echo"})
    assert echo.status_code == 200


async def test_persona_list_filters_on_persona_type(tavus: httpx.AsyncClient) -> None:
    """persona_type=user lists only our personas, system only the stock ones."""
    mine = (await create_persona(tavus)).json()["persona_id"]
    users = (await tavus.get("/personas", params={"persona_type": "user"})).json()
    assert [p["persona_id"] for p in users["data"]] == [mine] and users["total_count"] == 1
    stock = (await tavus.get("/personas", params={"persona_type": "system", "limit": 50})).json()
    stock_ids = {p["persona_id"] for p in stock["data"]}
    assert {PIPECAT_PERSONA_ID, SALES_COACH_PERSONA_ID} <= stock_ids and mine not in stock_ids
    everything = (await tavus.get("/personas")).json()
    assert everything["total_count"] == stock["total_count"] + 1


async def test_patch_applies_rfc6902_and_returns_the_persona(tavus: httpx.AsyncClient) -> None:
    """A JSON Patch answers 200 with the updated persona and a new updated_at."""
    persona_id = (await create_persona(tavus, layers={"llm": {"model": "tavus-gpt-oss"}})).json()[
        "persona_id"
    ]
    before = (await tavus.get(f"/personas/{persona_id}")).json()
    patch = [
        {"op": "replace", "path": "/system_prompt", "value": "You are calm."},
        {"op": "replace", "path": "/layers/llm/model", "value": "tavus-gpt-4o"},
        {"op": "add", "path": "/default_replica_id", "value": ANNA_REPLICA_ID},
    ]
    response = await tavus.patch(f"/personas/{persona_id}", json=patch)
    assert response.status_code == 200
    body = response.json()
    assert body["system_prompt"] == "You are calm."
    assert body["layers"]["llm"]["model"] == "tavus-gpt-4o"
    assert body == (await tavus.get(f"/personas/{persona_id}")).json()
    assert body["created_at"] == before["created_at"]


async def test_patch_that_changes_nothing_is_304(tavus: httpx.AsyncClient) -> None:
    """Replacing a field with its current value answers 304 Not Modified."""
    persona_id = (await create_persona(tavus)).json()["persona_id"]
    patch = [{"op": "replace", "path": "/system_prompt", "value": "You coach."}]
    response = await tavus.patch(f"/personas/{persona_id}", json=patch)
    assert response.status_code == 304


async def test_malformed_patch_is_422(tavus: httpx.AsyncClient) -> None:
    """Not-an-array, unknown ops, bad paths and failed tests give 422 Invalid JSON patch format."""
    persona_id = (await create_persona(tavus)).json()["persona_id"]
    for patch in (
        {"op": "replace", "path": "/system_prompt", "value": "x"},
        [{"op": "frobnicate", "path": "/system_prompt"}],
        [{"op": "remove", "path": "/layers/stt/hotwords"}],
        [{"op": "test", "path": "/persona_name", "value": "someone else"}],
        [{"op": "replace", "path": "/persona_id", "value": "p000000000000"}],
    ):
        response = await tavus.patch(f"/personas/{persona_id}", json=patch)
        assert response.status_code == 422, patch
        assert response.json() == {"message": "Invalid JSON patch format"}


async def test_persona_unknown_ids_are_400(tavus: httpx.AsyncClient) -> None:
    """Get, patch and delete of an unknown persona give 400 Invalid persona_id."""
    patch = [{"op": "replace", "path": "/persona_name", "value": "x"}]
    for response in (
        await tavus.get("/personas/p000000000000"),
        await tavus.patch("/personas/p000000000000", json=patch),
        await tavus.delete("/personas/p000000000000"),
    ):
        assert response.status_code == 400
        assert response.json() == {"error": "Invalid persona_id"}


async def test_delete_persona_is_204(tavus: httpx.AsyncClient) -> None:
    """DELETE answers 204 with no body, and the persona is gone afterwards."""
    persona_id = (await create_persona(tavus)).json()["persona_id"]
    response = await tavus.delete(f"/personas/{persona_id}")
    assert response.status_code == 204 and response.content == b""
    assert (await tavus.get(f"/personas/{persona_id}")).status_code == 400


async def test_stock_personas_cannot_be_changed(tavus: httpx.AsyncClient) -> None:
    """Patching or deleting a system persona is refused like a foreign id; it stays intact."""
    patch = [{"op": "replace", "path": "/persona_name", "value": "Bob"}]
    assert (await tavus.patch(f"/personas/{PIPECAT_PERSONA_ID}", json=patch)).status_code == 400
    assert (await tavus.delete(f"/personas/{PIPECAT_PERSONA_ID}")).status_code == 400
    assert (await tavus.get(f"/personas/{PIPECAT_PERSONA_ID}")).json() == PIPECAT0
