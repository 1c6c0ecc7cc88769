"""A job that asks for its transcript gets it with its outcome: from Tavus (phoenix_rest), from the
pipeline's context (pipecat_daily), scrubbed, bounded, and still delivered when its worker dies."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.reliability.env import poll_until
from tests.worker.harness import TAVUS_KEY, Harness, job
from tests.worker.test_cli import run_cli
from tests.worker.test_pipecat_daily import start as start_pipecat
from worker.contract import TRANSCRIPT_MAX_TURNS

pytestmark = pytest.mark.broker

# A Daily meeting token's shape (a JWT): never a transcript's text, whoever says it.
A_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJyIjoiYXctcm9vbSIsIm8iOnRydWV9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


async def live_call(h: Harness, **fields: Any) -> tuple[str, dict[str, Any]]:
    """Publish a job asking for its transcript (the call ends once the user leaves); its
    session id and `ready`."""
    body = job(transcript=True, participant_left_timeout_s=0, **fields)
    await h.publish(body)
    return body["session_id"], await h.wait_for(body["session_id"], "ready")


async def kill(victim: asyncio.subprocess.Process) -> None:
    await asyncio.sleep(0.5)  # the job's ack lands: the session is past intake
    victim.send_signal(signal.SIGKILL)
    await victim.wait()


def said(event: dict[str, object]) -> list[tuple[str, str]]:
    transcript = event["transcript"]
    assert isinstance(transcript, dict)
    return [(t["speaker"], t["text"]) for t in transcript["turns"]]


async def test_phoenix_session_ends_with_what_was_said_and_without_the_system_prompt(
    h: Harness,
) -> None:
    """A phoenix_rest session asked for its transcript ends (stopped) with the user's and the
    avatar's turns from Tavus, with their times, and no system prompt; one that did not ask
    carries none."""
    await h.start_worker()
    body = job(transcript=True, persona={"persona_name": "Coach", "system_prompt": "Be kind."})
    plain = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.publish(plain)
    ready = await h.wait_for(sid, "ready")
    cid = ready["conversation_id"]
    h.sim.join(cid)
    h.sim.say(cid, "user", "How do I open a pitch?")
    h.sim.say(cid, "assistant", "Start with the customer's problem.")
    await h.wait_for(plain["session_id"], "ready")
    await h.stop_session(sid)
    await h.stop_session(plain["session_id"])
    ended = await h.wait_for(sid, "ended")
    assert ended["reason"] == "stopped"
    assert said(ended) == [
        ("user", "How do I open a pitch?"),
        ("assistant", "Start with the customer's problem."),
    ]
    transcript = ended["transcript"]
    assert transcript["source"] == "tavus" and transcript["truncated"] is False
    assert all(t["at"] and t["seconds_from_start"] is not None for t in transcript["turns"])
    assert "Be kind." not in str(transcript)
    assert (await h.wait_for(plain["session_id"], "ended"))["transcript"] is None


async def test_a_long_transcript_keeps_its_last_turns_and_says_it_was_cut(h: Harness) -> None:
    """Past the bound the outcome keeps the last turns, marks the transcript truncated and
    counts the oldest turns it dropped."""
    await h.start_worker()
    sid, ready = await live_call(h)
    cid = ready["conversation_id"]
    h.sim.join(cid)
    for n in range(TRANSCRIPT_MAX_TURNS + 50):
        h.sim.say(cid, "user", f"line {n}")
    h.sim.leave(cid)
    ended = await h.wait_for(sid, "ended")
    transcript = ended["transcript"]
    assert ended["reason"] == "participant_left"
    assert transcript["truncated"] is True and transcript["dropped_turns"] == 50
    assert len(transcript["turns"]) == TRANSCRIPT_MAX_TURNS
    assert transcript["turns"][0]["text"] == "line 50"
    assert transcript["turns"][-1]["text"] == f"line {TRANSCRIPT_MAX_TURNS + 49}"


async def test_secrets_and_tokens_said_in_a_session_never_reach_the_transcript(
    h: Harness,
) -> None:
    """A worker's API key and a meeting token spoken in the call come out as *** in the
    transcript (a real `avatar-worker run` process)."""
    await h.spawn_worker_process()
    sid, ready = await live_call(h)
    cid = ready["conversation_id"]
    h.sim.join(cid)
    h.sim.say(cid, "user", f"my key is {TAVUS_KEY} and my token {A_TOKEN}")
    h.sim.leave(cid)
    ended = await h.wait_for(sid, "ended")
    assert said(ended) == [("user", "my key is *** and my token ***")]


async def test_a_killed_workers_session_still_delivers_what_tavus_kept(h: Harness) -> None:
    """SIGKILL the worker of a live phoenix_rest session: the worker that adopts it publishes
    the outcome with the transcript Tavus kept, including what was said before the kill."""
    victim = await h.spawn_worker_process()
    sid, ready = await live_call(h)
    cid = ready["conversation_id"]
    h.sim.join(cid)
    h.sim.say(cid, "user", "Before the crash.")
    await kill(victim)
    adopter = await h.start_worker(worker_reaper_interval_s=0.2, worker_reaper_grace_s=0.5)
    sessions = adopter.sessions
    assert sessions is not None
    assert await poll_until(lambda: sessions.is_live(sid), 20), "the session was not adopted"
    h.sim.say(cid, "assistant", "After the crash.")
    h.sim.leave(cid)
    ended = await h.wait_for(sid, "ended", timeout_s=20)
    assert ended["adopted_from"] == ready["worker_id"]
    assert said(ended) == [("user", "Before the crash."), ("assistant", "After the crash.")]


async def test_a_session_that_ended_while_its_worker_was_dead_still_has_its_transcript(
    h: Harness,
) -> None:
    """The worker dies and the user hangs up before anyone adopts the session: the reaper's
    outcome carries the transcript Tavus kept."""
    victim = await h.spawn_worker_process()
    sid, ready = await live_call(h)
    cid = ready["conversation_id"]
    await kill(victim)
    h.sim.join(cid)
    h.sim.say(cid, "user", "Anyone there?")
    h.sim.leave(cid)
    await h.start_worker(worker_reaper_interval_s=0.2, worker_reaper_grace_s=0.5)
    ended = await h.wait_for(sid, "ended", timeout_s=20)
    assert ended["reason"] == "participant_left"
    assert said(ended) == [("user", "Anyone there?")]


async def test_pipecat_daily_session_ends_with_the_pipelines_own_transcript(h: Harness) -> None:
    """A pipecat_daily session asked for its transcript ends with the turns of its pipeline's
    LLM context (the avatar's greeting here), timed, and without the system messages."""
    await start_pipecat(h, hook="user_greeted")
    body = job(mode="pipecat_daily", transcript=True)
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready", timeout_s=30)
    await h.stop_session(sid)  # the stop drains the pipeline: the greeting's reply lands first
    ended = await h.wait_for(sid, "ended", timeout_s=30)
    transcript = ended["transcript"]
    assert transcript["source"] == "pipeline"
    assert said(ended) == [("assistant", "Hello there.")]
    assert transcript["turns"][0]["at"] and transcript["turns"][0]["seconds_from_start"] >= 0


async def test_enqueue_wait_transcript_prints_the_transcript_at_the_end(h: Harness) -> None:
    """`avatar-worker enqueue --wait --transcript` prints the events, then the transcript's
    turns with their offsets once the session has ended."""
    await h.start_worker()
    enqueue = asyncio.create_task(
        run_cli(h, "enqueue", "--session-id", f"{h.prefix}-cli", "--wait", "--transcript")
    )
    ready = await h.wait_for(f"{h.prefix}-cli", "ready")
    cid = ready["conversation_id"]
    h.sim.join(cid)
    h.sim.say(cid, "user", "Tell me a joke.")
    await h.stop_session(f"{h.prefix}-cli")
    code, out, err = await enqueue
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["accepted", "ready", "ended"]
    assert lines[4] == "transcript (tavus, 1 turns):"
    offset, *turn = lines[5].split()
    assert offset.endswith("s") and turn == ["user", "Tell", "me", "a", "joke."]
