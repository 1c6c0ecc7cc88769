"""phoenix_rest sessions through a real RabbitMQ and the simulator: lifecycle, failures, retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.worker.harness import Harness, job

pytestmark = pytest.mark.broker


async def test_session_goes_accepted_ready_ended_and_ends_its_conversation(h: Harness) -> None:
    """A job yields accepted → ready (with the Tavus URL) → ended(stopped), and the conversation ends."""
    await h.start_worker()
    body = job(
        custom_greeting="Hello!",
        conversational_context="A demo.",
        language="english",
        participant_left_timeout_s=30,
        max_duration_s=600,
        metadata={"ticket": 7},
    )
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    assert ready["mode"] == "phoenix_rest"
    assert ready["conversation_url"].endswith(ready["conversation_id"])
    assert ready["metadata"] == {"ticket": 7}
    assert ready["attempt"] == 1
    assert ready["fallback_reason"]  # auto fell back: no Daily here
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended")
    assert ended["reason"] == "stopped" and ended["duration_s"] >= 0
    assert h.statuses(sid) == ["accepted", "ready", "ended"]
    [cid] = h.created_conversations(sid)
    conversation = h.sim.conversations[cid]
    assert conversation.status == "ended"
    sent = conversation.request
    assert sent["custom_greeting"] == "Hello!"
    assert sent["conversational_context"] == "A demo."
    assert sent["replica_id"] == "r90bbd427f71"
    assert sent["properties"] == {
        "max_call_duration": 600,
        "participant_left_timeout": 30,
        "language": "english",
    }


async def test_events_also_go_to_reply_to_with_the_correlation_id(h: Harness) -> None:
    """A job with reply_to gets every event of its session on that queue, with its correlation id."""
    await h.start_worker()
    assert h.connection is not None
    channel = await h.connection.channel()
    reply = await channel.declare_queue(exclusive=True)
    body = job()
    await h.publish(body, reply_to=reply.name, correlation_id="corr-42")
    await h.wait_for(body["session_id"], "ready")
    got = []
    for _ in range(2):
        message = await reply.get(timeout=5)
        got.append((message.correlation_id, message.body))
    assert [c for c, _ in got] == ["corr-42", "corr-42"]
    assert b'"status":"accepted"' in got[0][1] and b'"status":"ready"' in got[1][1]


async def test_provider_ending_the_conversation_ends_the_session_with_its_reason(
    h: Harness,
) -> None:
    """When Tavus ends the call after the user left, the session ends with participant_left."""
    await h.start_worker()
    body = job(participant_left_timeout_s=0)
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    h.sim.join(ready["conversation_id"])
    h.sim.leave(ready["conversation_id"])
    ended = await h.wait_for(sid, "ended")
    assert ended["reason"] == "participant_left"


async def test_expired_job_is_not_started(h: Harness) -> None:
    """A job past its not_after gets `expired` and nothing is created at Tavus."""
    await h.start_worker()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    body = job(not_after=past)
    await h.publish(body)
    expired = await h.wait_for(body["session_id"], "expired")
    assert expired["not_after"].startswith(past[:19])
    assert h.statuses(body["session_id"]) == ["expired"]
    assert h.sim.calls_to("POST /v2/conversations") == []


async def test_unknown_replica_fails_with_a_clear_code_and_no_retry(h: Harness) -> None:
    """A replica Tavus does not know gives `failed` replica_not_found, once, without retrying."""
    await h.start_worker()
    body = job(replica_id="r000000000ff")
    await h.publish(body)
    failed = await h.wait_for(body["session_id"], "failed")
    assert failed["error"]["code"] == "replica_not_found"
    assert "r000000000ff" in failed["error"]["message"]
    assert failed["error"]["retryable"] is False
    assert h.statuses(body["session_id"]) == ["accepted", "failed"]


async def test_rejected_key_fails_with_tavus_auth_and_never_shows_the_key(h: Harness) -> None:
    """A wrong TAVUS_API_KEY gives `failed` tavus_auth naming the setting, without the key itself."""
    await h.start_worker(tavus_api_key="wrong-key-abcdef")
    body = job()
    await h.publish(body)
    failed = await h.wait_for(body["session_id"], "failed")
    assert failed["error"]["code"] == "tavus_auth"
    assert "TAVUS_API_KEY" in failed["error"]["message"]
    assert "wrong-key-abcdef" not in str(h.events)


async def test_transient_failure_is_retried_later_then_succeeds(h: Harness) -> None:
    """A Tavus outage longer than the client's own retries gives `retrying`, then attempt 2 is ready."""
    await h.start_worker()
    h.sim.faults.fail_next("POST /v2/conversations", n=2, status=503)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    retrying = await h.wait_for(sid, "retrying")
    assert retrying["error"]["code"] == "tavus_unavailable" and retrying["error"]["retryable"]
    assert retrying["delay_s"] == 0.2
    ready = await h.wait_for(sid, "ready")
    assert ready["attempt"] == 2
    assert h.statuses(sid) == ["accepted", "retrying", "accepted", "ready"]
    assert len(h.created_conversations(sid)) == 1


async def test_retries_stop_after_max_attempts_with_failed_and_dead_letter(h: Harness) -> None:
    """A lasting outage ends in `failed` after WORKER_MAX_ATTEMPTS and the job lands in the DLQ."""
    await h.start_worker()
    h.sim.faults.fail_next("POST /v2/conversations", n=100, status=503)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    failed = await h.wait_for(sid, "failed", timeout_s=20)
    assert failed["attempt"] == 3
    assert "gave up after 3 attempts" in failed["error"]["message"]
    assert h.statuses(sid).count("retrying") == 2
    [dead] = await h.dead_letters(1)
    assert sid.encode() in dead.body
    assert "tavus_unavailable after 3 attempts" in dead.headers["x-avatar-error"]
    assert h.created_conversations(sid) == []


async def test_concurrency_limit_is_retried_as_transient(h: Harness) -> None:
    """Tavus's 400 'maximum concurrent conversations' is retried later, not failed at once."""
    await h.start_worker()
    h.sim.faults.set_concurrency_cap(0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    retrying = await h.wait_for(sid, "retrying")
    assert retrying["error"]["code"] == "tavus_concurrency_limit"
    h.sim.faults.set_concurrency_cap(None)
    await h.wait_for(sid, "ready")


async def test_out_of_credits_fails_with_its_code(h: Harness) -> None:
    """A 402 from Tavus gives `failed` tavus_out_of_credits."""
    await h.start_worker()
    h.sim.faults.set_out_of_credits(True)
    body = job()
    await h.publish(body)
    failed = await h.wait_for(body["session_id"], "failed")
    assert failed["error"]["code"] == "tavus_out_of_credits"


async def test_inline_persona_is_created_once_and_reused(h: Harness) -> None:
    """Two sessions with the same persona definition use one Tavus persona, created once."""
    await h.start_worker()
    persona = {"persona_name": "Coach", "system_prompt": "You coach sales.", "context": "B2B"}
    first, second = job(persona=persona), job(persona=persona)
    await h.publish(first)
    await h.publish(second)
    await h.wait_for(first["session_id"], "ready")
    await h.wait_for(second["session_id"], "ready")
    assert len(h.sim.calls_to("POST /v2/personas")) == 1
    ids = {
        h.sim.conversations[c].persona_id
        for s in (first, second)
        for c in h.created_conversations(s["session_id"])
    }
    assert len(ids) == 1 and None not in ids


async def test_explicit_pipecat_daily_that_cannot_run_fails_saying_why(h: Harness) -> None:
    """A job asking for pipecat_daily on a worker that cannot run it fails with mode_unavailable."""
    await h.start_worker()
    body = job(mode="pipecat_daily")
    await h.publish(body)
    failed = await h.wait_for(body["session_id"], "failed")
    assert failed["error"]["code"] == "mode_unavailable"
    assert "pipecat_daily" in failed["error"]["message"]


async def test_every_created_conversation_is_ended_after_a_mixed_run(h: Harness) -> None:
    """After sessions that end, fail and retry, no conversation the worker created is left active."""
    await h.start_worker()
    h.sim.faults.fail_next("POST /v2/conversations", n=2, status=500)
    bodies = [job() for _ in range(4)]
    for body in bodies:
        await h.publish(body)
    for body in bodies:
        await h.wait_for(body["session_id"], "ready", timeout_s=20)
        await h.stop_session(body["session_id"])
    for body in bodies:
        await h.wait_for(body["session_id"], "ended")
    await asyncio.sleep(0.1)
    active = [c for c in h.sim.conversations.values() if c.status == "active"]
    assert active == []
