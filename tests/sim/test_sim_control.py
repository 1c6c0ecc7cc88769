"""Fault injection, recorded calls and the /_sim control surface, driven both from Python and
over HTTP as a test in another process would."""

from __future__ import annotations

import time

import httpx
import pytest

from tavus.sim import ANNA_REPLICA_ID, ManualClock, Simulator

CREATE = {"replica_id": ANNA_REPLICA_ID}


async def test_fail_next_answers_n_calls_then_recovers(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """fail_next(n=2, status=503) fails exactly the next two matching calls, then serves again."""
    sim.faults.fail_next("POST /v2/conversations", n=2, status=503)
    statuses = [(await tavus.post("/conversations", json=CREATE)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(sim.conversations) == 1


async def test_fail_next_only_hits_the_matching_endpoint(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """A fault on "POST /v2/conversations/{id}/end" leaves create and get alone."""
    sim.faults.fail_next("POST /v2/conversations/{id}/end", status=500)
    conversation_id = (await tavus.post("/conversations", json=CREATE)).json()["conversation_id"]
    assert (await tavus.get(f"/conversations/{conversation_id}")).status_code == 200
    assert (await tavus.post(f"/conversations/{conversation_id}/end")).status_code == 500
    assert (await tavus.post(f"/conversations/{conversation_id}/end")).status_code == 200


async def test_fail_next_with_body_and_retry_after(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """An injected failure can carry a custom body and a Retry-After header."""
    sim.faults.fail_next(
        "GET /v2/replicas", status=429, body={"message": "slow down"}, retry_after_s=2
    )
    response = await tavus.get("/replicas")
    assert response.status_code == 429
    assert response.json() == {"message": "slow down"}
    assert response.headers["Retry-After"] == "2"


async def test_injected_daily_failures_use_dailys_error_shape(
    sim: Simulator, daily: httpx.AsyncClient
) -> None:
    """Without a body, an injected Daily 5xx is server-error and a 429 is rate-limit-error."""
    sim.faults.fail_next("POST /v1/rooms", status=502)
    sim.faults.fail_next("GET /v1/rooms/*", status=429)
    assert (await daily.post("/rooms", json={})).json()["error"] == "server-error"
    assert (await daily.get("/rooms/x")).json()["error"] == "rate-limit-error"


async def test_latency_delays_only_the_matching_endpoint(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """latency() slows the named endpoint enough for a client timeout to fire; others stay fast."""
    sim.faults.latency("GET /v2/replicas", 0.5)
    with pytest.raises(httpx.ReadTimeout):
        await tavus.get("/replicas", timeout=0.1)
    started = time.monotonic()
    assert (await tavus.get("/personas")).status_code == 200
    assert time.monotonic() - started < 0.4
    sim.faults.latency("GET /v2/replicas", 0)
    assert (await tavus.get("/replicas", timeout=1.0)).status_code == 200


async def test_drop_next_closes_the_connection_without_answer(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """drop_next makes the client see a transport error; the call is recorded with no status."""
    sim.faults.drop_next("POST /v2/conversations")
    with pytest.raises(httpx.RemoteProtocolError):
        await tavus.post("/conversations", json=CREATE)
    assert sim.calls[-1].status is None
    assert sim.conversations == {}
    assert (await tavus.post("/conversations", json=CREATE)).status_code == 200


async def test_recorded_calls_hold_request_status_and_key_validity_but_no_key(
    sim: Simulator, tavus: httpx.AsyncClient, daily: httpx.AsyncClient
) -> None:
    """Each provider call is recorded with method, path, query, JSON, status and key validity."""
    await tavus.post("/conversations", json=CREATE)
    await tavus.get("/conversations", params={"status": "active"}, headers={"x-api-key": "bad"})
    await daily.post("/rooms", json={"name": "rec"})
    recorded = [call.to_json() for call in sim.calls]
    assert [(c["provider"], c["method"], c["path"], c["status"]) for c in recorded] == [
        ("tavus", "POST", "/v2/conversations", 200),
        ("tavus", "GET", "/v2/conversations", 401),
        ("daily", "POST", "/v1/rooms", 200),
    ]
    assert recorded[0]["json"] == CREATE and recorded[0]["key_valid"] is True
    assert recorded[1]["query"] == {"status": "active"} and recorded[1]["key_valid"] is False
    assert "test-tavus-key" not in repr(recorded) and "test-daily-key" not in repr(recorded)
    assert [c.path for c in sim.calls_to("POST /v1/rooms")] == ["/v1/rooms"]


async def test_calls_are_readable_and_clearable_over_http(
    tavus: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """GET /_sim/calls lists the calls (filterable by provider); DELETE clears them."""
    await tavus.get("/replicas")
    calls = (await control.get("/_sim/calls", params={"provider": "tavus"})).json()
    assert calls["total_count"] == 1 and calls["data"][0]["path"] == "/v2/replicas"
    assert (await control.get("/_sim/calls", params={"provider": "daily"})).json()["data"] == []
    await control.delete("/_sim/calls")
    assert (await control.get("/_sim/calls")).json()["total_count"] == 0


async def test_http_fault_endpoints_drive_the_same_plan(
    tavus: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """/_sim/faults/fail, /drop, /latency, /concurrency-cap and /out-of-credits all take effect."""
    endpoint = "POST /v2/conversations"
    await control.post("/_sim/faults/fail", json={"endpoint": endpoint, "n": 1, "status": 500})
    assert (await tavus.post("/conversations", json=CREATE)).status_code == 500
    await control.post("/_sim/faults/drop", json={"endpoint": endpoint})
    with pytest.raises(httpx.TransportError):
        await tavus.post("/conversations", json=CREATE)
    await control.post("/_sim/faults/latency", json={"endpoint": endpoint, "seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        await tavus.post("/conversations", json=CREATE, timeout=0.1)
    await control.delete("/_sim/faults")
    await control.post("/_sim/faults/out-of-credits", json={"enabled": True})
    assert (await tavus.post("/conversations", json=CREATE)).status_code == 402
    await control.post("/_sim/faults/out-of-credits", json={"enabled": False})
    await control.post("/_sim/faults/concurrency-cap", json={"cap": 0})
    capped = await tavus.post("/conversations", json=CREATE)
    assert capped.status_code == 400 and "maximum concurrent" in capped.json()["message"]
    await control.post("/_sim/faults/concurrency-cap", json={"cap": None})
    assert (await tavus.post("/conversations", json=CREATE)).status_code == 200


async def test_fault_plan_is_visible_and_bad_admin_input_is_400(
    control: httpx.AsyncClient,
) -> None:
    """GET /_sim/faults shows pending faults; a malformed admin request says what is wrong."""
    await control.post("/_sim/faults/fail", json={"endpoint": "GET /v2/replicas", "n": 3})
    faults = (await control.get("/_sim/faults")).json()
    assert faults["fail_next"][0]["remaining"] == 3 and faults["fail_next"][0]["status"] == 503
    for body in ({"n": 1}, {"endpoint": "replicas"}, {"endpoint": "GET /v2/x", "n": "two"}):
        response = await control.post("/_sim/faults/fail", json=body)
        assert response.status_code == 400 and response.json()["error"]


async def test_join_leave_and_clock_over_http_end_a_conversation(
    tavus: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """/_sim join, leave and clock/advance drive participant_left_timeout from another process."""
    body = {**CREATE, "properties": {"participant_left_timeout": 30}}
    conversation_id = (await tavus.post("/conversations", json=body)).json()["conversation_id"]
    assert (await control.post(f"/_sim/conversations/{conversation_id}/join")).status_code == 200
    assert (await control.post(f"/_sim/conversations/{conversation_id}/leave")).status_code == 200
    advanced = await control.post("/_sim/clock/advance", json={"seconds": 30})
    assert advanced.json()["ended"] == [conversation_id]
    assert (await control.post("/_sim/conversations/c000000000/join")).status_code == 404


async def test_clock_advance_needs_a_manual_clock() -> None:
    """On the system clock, /_sim/clock/advance answers 409 instead of pretending."""
    async with Simulator().running() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.post("/_sim/clock/advance", json={"seconds": 1})
    assert response.status_code == 409


async def test_state_dump_shows_conversations_rooms_and_faults(
    sim: Simulator, tavus: httpx.AsyncClient, daily: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """GET /_sim/state dumps conversations (with shutdown reasons), rooms, catalogue and faults."""
    conversation_id = (await tavus.post("/conversations", json=CREATE)).json()["conversation_id"]
    await tavus.post(f"/conversations/{conversation_id}/end")
    await daily.post("/rooms", json={"name": "dumped"})
    sim.faults.set_concurrency_cap(2)
    dump = (await control.get("/_sim/state")).json()
    (conversation,) = dump["state"]["conversations"]
    assert conversation["shutdown_reason"] == "end_conversation_endpoint_hit"
    assert [room["name"] for room in dump["state"]["rooms"]] == ["dumped"]
    assert any(p["persona_id"] == "pipecat0" for p in dump["state"]["personas"])
    assert dump["faults"]["concurrency_cap"] == 2
    assert dump["config"]["daily_rate_limits"] is True


async def test_reset_returns_to_the_seeded_world(
    sim: Simulator, tavus: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """POST /_sim/reset drops conversations, user personas, faults and calls, keeping the seeds."""
    await tavus.post("/conversations", json=CREATE)
    await tavus.post("/personas", json={"persona_name": "e", "pipeline_mode": "echo"})
    sim.faults.fail_next("GET /v2/replicas", n=5)
    assert (await control.post("/_sim/reset")).status_code == 200
    assert sim.conversations == {} and sim.calls == []
    assert all(p.persona_type == "system" for p in sim.personas.values())
    assert (await tavus.get("/replicas")).status_code == 200


async def test_config_endpoint_switches_rate_limits(
    daily: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """POST /_sim/config turns Daily's rate limits off and Retry-After on."""
    await control.post("/_sim/config", json={"daily_rate_limits": False})
    statuses = {(await daily.delete(f"/rooms/r{i}")).status_code for i in range(4)}
    assert statuses == {404}
    await control.post("/_sim/config", json={"daily_rate_limits": True, "daily_retry_after": True})
    limited = [await daily.delete(f"/rooms/s{i}") for i in range(3)][-1]
    assert limited.status_code == 429 and "Retry-After" in limited.headers


async def test_manual_clock_is_shared_by_timestamps(
    clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """Timestamps come from the injected clock, so tests can predict them."""
    clock.advance(0.25)
    created = (await tavus.post("/conversations", json=CREATE)).json()
    assert created["created_at"] == "2026-09-21T14:13:20.250000Z"
