"""The transcript the simulator posts when a conversation ends, in the shape Tavus documents."""

from __future__ import annotations

import httpx

from tavus.sim import ANNA_REPLICA_ID, ManualClock, Simulator


async def transcript_of(tavus: httpx.AsyncClient, conversation_id: str) -> list[dict[str, object]]:
    got = await tavus.get(f"/conversations/{conversation_id}", params={"verbose": "true"})
    [ready] = [
        e for e in got.json()["events"] if e["event_type"] == "application.transcription_ready"
    ]
    return list(ready["properties"]["transcript"])


async def test_what_was_said_is_in_the_transcript_with_its_times(
    sim: Simulator, clock: ManualClock, tavus: httpx.AsyncClient
) -> None:
    """Turns said through /_sim/.../say come back after the system entry, each with a Unix
    timestamp and its seconds from the start."""
    created = await tavus.post(
        "/conversations", json={"replica_id": ANNA_REPLICA_ID, "conversational_context": "Quiz."}
    )
    conversation_id = created.json()["conversation_id"]
    sim.join(conversation_id)
    clock.advance(2)
    async with httpx.AsyncClient(base_url=sim.base_url) as admin:
        said = await admin.post(
            f"/_sim/conversations/{conversation_id}/say",
            json={"role": "user", "content": "What is 2+2?"},
        )
        assert said.status_code == 200
    clock.advance(1)
    sim.say(conversation_id, "assistant", "Four.")
    await tavus.post(f"/conversations/{conversation_id}/end")
    system, user, assistant = await transcript_of(tavus, conversation_id)
    assert system == {"role": "system", "content": "Quiz."}
    assert (user["role"], user["content"], user["seconds_from_start"]) == (
        "user",
        "What is 2+2?",
        2,
    )
    assert (assistant["content"], assistant["seconds_from_start"]) == ("Four.", 3)
    assert isinstance(user["timestamp"], float) and assistant["timestamp"] == user["timestamp"] + 1


async def test_a_silent_participant_gets_the_scripted_exchange_after_the_greeting(
    sim: Simulator, tavus: httpx.AsyncClient
) -> None:
    """A participant who joined and said nothing scripted yields greeting, "Hi." and a reply."""
    created = await tavus.post(
        "/conversations", json={"replica_id": ANNA_REPLICA_ID, "custom_greeting": "Welcome!"}
    )
    conversation_id = created.json()["conversation_id"]
    sim.join(conversation_id)
    await tavus.post(f"/conversations/{conversation_id}/end")
    turns = await transcript_of(tavus, conversation_id)
    assert [(t["role"], t["content"]) for t in turns[1:]] == [
        ("assistant", "Welcome!"),
        ("user", "Hi."),
        ("assistant", "Hello! How can I help you today?"),
    ]
