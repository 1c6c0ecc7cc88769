"""Conversations ending by themselves on the injectable clock, their events, and the webhooks
the simulator POSTs to callback_url."""

from __future__ import annotations

import asyncio

import httpx

from tavus.sim import ANNA_REPLICA_ID, PIPECAT_PERSONA_ID, ManualClock, Simulator


async def create(tavus: httpx.AsyncClient, **body: object) -> str:
    response = await tavus.post("/conversations", json={"replica_id": ANNA_REPLICA_ID, **body})
    assert response.status_code == 200
    return str(response.json()["conversation_id"])


async def shutdown_reason(tavus: httpx.AsyncClient, conversation_id: str) -> str | None:
    got = await tavus.get(f"/conversations/{conversation_id}", params={"verbose": "true"})
    for event in got.json()["events"]:
        if event["event_type"] == "system.shutdown":
            return str(event["properties"]["shutdown_reason"])
    return None


async def test_nobody_joining_ends_after_the_default_absent_timeout(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """With nobody joining, the call stays active until 300 s and then ends as absent."""
    conversation_id = await create(tavus)
    clock.advance(299)
    assert sim.sweep() == []
    clock.advance(1)
    assert sim.sweep() == [conversation_id]
    assert await shutdown_reason(tavus, conversation_id) == "participant_absent_timeout"


async def test_custom_absent_timeout_is_honoured(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """properties.participant_absent_timeout replaces the 300 s default."""
    conversation_id = await create(tavus, properties={"participant_absent_timeout": 30})
    clock.advance(30)
    assert sim.sweep() == [conversation_id]


async def test_a_joined_participant_stops_the_absent_timer(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """Once the simulated participant joins, the absent timeout no longer applies."""
    conversation_id = await create(tavus, properties={"participant_absent_timeout": 30})
    sim.join(conversation_id)
    clock.advance(600)
    assert sim.sweep() == []
    assert sim.conversations[conversation_id].status == "active"


async def test_leaving_ends_after_participant_left_timeout(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """After the participant leaves, the call ends participant_left_timeout seconds later."""
    conversation_id = await create(tavus, properties={"participant_left_timeout": 60})
    sim.join(conversation_id)
    clock.advance(10)
    sim.leave(conversation_id)
    clock.advance(59)
    assert sim.sweep() == []
    clock.advance(1)
    assert sim.sweep() == [conversation_id]
    assert await shutdown_reason(tavus, conversation_id) == "participant_left_timeout"


async def test_leaving_with_the_default_left_timeout_ends_at_once(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """participant_left_timeout defaults to 0: leaving ends the call immediately."""
    conversation_id = await create(tavus)
    sim.join(conversation_id)
    sim.leave(conversation_id)
    assert sim.conversations[conversation_id].shutdown_reason == "participant_left_timeout"


async def test_rejoining_before_the_left_timeout_keeps_the_call(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """A participant who comes back within participant_left_timeout keeps the call alive."""
    conversation_id = await create(tavus, properties={"participant_left_timeout": 60})
    sim.join(conversation_id)
    sim.leave(conversation_id)
    clock.advance(30)
    sim.join(conversation_id)
    clock.advance(120)
    assert sim.sweep() == []


async def test_max_call_duration_ends_even_an_attended_call(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """A call with a participant present still ends at max_call_duration (default 3600 s)."""
    short = await create(tavus, properties={"max_call_duration": 120})
    default = await create(tavus)
    sim.join(short)
    sim.join(default)
    clock.advance(120)
    assert sim.sweep() == [short]
    clock.advance(3600 - 120)
    assert sim.sweep() == [default]
    assert await shutdown_reason(tavus, short) == "max_call_duration"
    assert await shutdown_reason(tavus, default) == "max_call_duration"


async def test_verbose_get_lists_joined_shutdown_and_transcript_events(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """verbose=true shows replica_joined, shutdown and transcription_ready with a system entry."""
    conversation_id = await create(tavus, persona_id=PIPECAT_PERSONA_ID)
    clock.advance(1)
    sim.sweep()
    sim.join(conversation_id)
    await tavus.post(f"/conversations/{conversation_id}/end")
    got = await tavus.get(f"/conversations/{conversation_id}", params={"verbose": "true"})
    events = got.json()["events"]
    assert [e["event_type"] for e in events] == [
        "system.replica_joined",
        "system.shutdown",
        "application.transcription_ready",
    ]
    assert all(e["properties"]["replica_id"] == ANNA_REPLICA_ID for e in events)
    transcript = events[2]["properties"]["transcript"]
    assert transcript[0]["role"] == "system"
    assert {entry["role"] for entry in transcript[1:]} == {"user", "assistant"}


async def test_background_sweep_ends_due_conversations_without_help(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """The sweep task (every 0.2 s) ends a conversation once the clock passes its timeout."""
    conversation_id = await create(tavus, properties={"participant_absent_timeout": 5})
    clock.advance(5)
    for _ in range(50):
        if sim.conversations[conversation_id].status == "ended":
            break
        await asyncio.sleep(0.05)
    got = await tavus.get(f"/conversations/{conversation_id}")
    assert got.json()["status"] == "ended"


async def test_the_api_reflects_the_clock_without_waiting_for_the_sweeper(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """Right after the clock passes a timeout, GET shows ended and the slot is free again."""
    sim.faults.set_concurrency_cap(1)
    conversation_id = await create(tavus, properties={"participant_absent_timeout": 10})
    clock.advance(10)
    got = await tavus.get(f"/conversations/{conversation_id}")
    assert got.json()["status"] == "ended"
    assert (await tavus.post("/conversations", json={"replica_id": ANNA_REPLICA_ID})).is_success


async def test_webhooks_arrive_in_order_with_the_documented_envelope(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """callback_url receives replica_joined, shutdown and transcription_ready envelopes."""
    callback_url = f"{sim.base_url}/_sim/webhook-sink"
    conversation_id = await create(tavus, callback_url=callback_url)
    clock.advance(1)
    sim.sweep()
    await tavus.post(f"/conversations/{conversation_id}/end")
    await sim.drain_webhooks()
    received = (await control.get("/_sim/webhook-sink")).json()["data"]
    assert [w["event_type"] for w in received] == [
        "system.replica_joined",
        "system.shutdown",
        "application.transcription_ready",
    ]
    for webhook in received:
        assert set(webhook) == {
            "properties",
            "conversation_id",
            "webhook_url",
            "event_type",
            "message_type",
            "timestamp",
        }
        assert webhook["conversation_id"] == conversation_id
        assert webhook["webhook_url"] == callback_url
    assert received[1]["properties"]["shutdown_reason"] == "end_conversation_endpoint_hit"


async def test_a_failing_webhook_target_is_logged_and_ignored(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """An unreachable callback_url does not affect the API; the failed delivery is recorded."""
    conversation_id = await create(tavus, callback_url="http://127.0.0.1:9/unreachable")
    assert (await tavus.post(f"/conversations/{conversation_id}/end")).status_code == 200
    await sim.drain_webhooks()
    assert [d.event_type for d in sim.webhook_deliveries] == [
        "system.shutdown",
        "application.transcription_ready",
    ]
    assert all(d.status is None and d.error for d in sim.webhook_deliveries)
    assert (await tavus.get(f"/conversations/{conversation_id}")).status_code == 200


async def test_a_timed_out_conversation_posts_its_shutdown_webhook(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    """A timer-ended call notifies callback_url with the timer's shutdown_reason."""
    await create(tavus, callback_url=f"{sim.base_url}/_sim/webhook-sink")
    clock.advance(300)
    sim.sweep()
    await sim.drain_webhooks()
    received = (await control.get("/_sim/webhook-sink")).json()["data"]
    reasons = [w["properties"].get("shutdown_reason") for w in received]
    assert "participant_absent_timeout" in reasons
