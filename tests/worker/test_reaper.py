"""The reaper finishes sessions whose worker died, and never touches live ones."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest

from tests.reliability.env import poll_until
from tests.worker.harness import Harness, job
from tests.worker.test_pipecat_daily import pipecat_settings
from worker.broker import BrokerUnavailable
from worker.core.records import SessionRecord

pytestmark = pytest.mark.broker


async def ready_in_a_worker_process(
    h: Harness, **overrides: Any
) -> tuple[asyncio.subprocess.Process, str, dict[str, Any]]:
    """A worker process with one session past intake: (the process, session id, `ready`)."""
    victim = await h.spawn_worker_process(**overrides)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    await asyncio.sleep(0.5)  # the job's ack lands
    return victim, sid, ready


async def test_live_phoenix_session_of_a_killed_worker_is_adopted_and_its_call_goes_on(
    h: Harness,
) -> None:
    """SIGKILL a worker with a live phoenix_rest session: another worker adopts it, the user's
    conversation stays up, and a later stop ends it once, with the job's metadata, reply_to and
    correlation id, and `adopted_from` naming the dead worker."""
    victim = await h.spawn_worker_process()
    assert h.connection is not None
    channel = await h.connection.channel()
    reply = await channel.declare_queue(exclusive=True)
    body = job(metadata={"k": "v"})
    sid = body["session_id"]
    await h.publish(body, reply_to=reply.name, correlation_id="c-9")
    ready = await h.wait_for(sid, "ready")
    await asyncio.sleep(0.5)  # let the job's ack reach the broker: the session is past intake
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    adopter = await h.start_worker(worker_reaper_interval_s=0.2, worker_reaper_grace_s=0.5)
    sessions = adopter.sessions
    assert sessions is not None
    assert await poll_until(lambda: sessions.is_live(sid), 20), "the session was not adopted"
    await asyncio.sleep(1.0)  # sweeps and lapsed leases find nothing more to do
    assert h.sim.conversations[ready["conversation_id"]].status == "active"
    assert h.statuses(sid) == ["accepted", "ready"]
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended")
    assert ended["reason"] == "stopped" and ended["adopted_from"] == ready["worker_id"]
    assert ended["worker_id"] != ready["worker_id"]
    assert ended["metadata"] == {"k": "v"} and ended["mode"] == "phoenix_rest"
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"
    replies = [await reply.get(timeout=5) for _ in range(3)]
    assert [json.loads(r.body)["status"] for r in replies] == ["accepted", "ready", "ended"]
    assert {r.correlation_id for r in replies} == {"c-9"}
    await asyncio.sleep(0.6)
    assert h.statuses(sid) == ["accepted", "ready", "ended"]


async def test_a_conversation_that_ended_while_nobody_followed_it_ends_with_its_own_reason(
    h: Harness,
) -> None:
    """A worker dies and the user hangs up before any worker adopts the session: its outcome is
    how the conversation ended (participant_left), not worker_lost."""
    victim = await h.spawn_worker_process()
    body = job(participant_left_timeout_s=0)
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    await asyncio.sleep(0.5)  # the job's ack lands
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    h.sim.join(ready["conversation_id"])
    h.sim.leave(ready["conversation_id"])
    await h.start_worker(worker_reaper_interval_s=0.2, worker_reaper_grace_s=0.5)
    ended = await h.wait_for(sid, "ended", timeout_s=20)
    assert ended["reason"] == "participant_left"
    await asyncio.sleep(0.6)
    assert h.statuses(sid) == ["accepted", "ready", "ended"]


async def test_reaper_leaves_live_sessions_of_other_workers_alone(h: Harness) -> None:
    """A sweep from another worker does not end a session that a live worker runs."""
    await h.spawn_worker_process()
    other = await h.start_worker(worker_reaper_interval_s=3600)  # swept by hand below
    body = job()
    await h.publish(body)
    ready = await h.wait_for(body["session_id"], "ready")
    assert other.reaper is not None
    assert await other.reaper.sweep_once() == []
    assert h.sim.conversations[ready["conversation_id"]].status == "active"
    assert h.statuses(body["session_id"]) == ["accepted", "ready"]


async def test_worker_killed_while_provisioning_is_resumed_by_another_worker(h: Harness) -> None:
    """SIGKILL before `ready`: the unacked job is redelivered and the next worker resumes the
    session; a conversation the dead worker left in flight is ended, so one stays active."""
    h.sim.faults.latency("POST /v2/conversations", 1.0)
    victim = await h.spawn_worker_process()
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "accepted")
    await asyncio.sleep(0.3)  # the create is in flight at Tavus
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    rescuer = await h.start_worker()
    ready = await h.wait_for(sid, "ready", timeout_s=20)
    assert ready["worker_id"] == rescuer.settings.worker_id
    await asyncio.sleep(1.5)  # the dead worker's create lands; the next poll ends it if it is extra
    active = [c for c in h.created_conversations(sid) if h.sim.conversations[c].status == "active"]
    assert active == [ready["conversation_id"]]
    assert h.statuses(sid) == ["accepted", "accepted", "ready"]


async def test_session_of_a_worker_killed_after_releasing_gets_its_outcome(h: Harness) -> None:
    """A worker killed after its conversation ended but before `ended` went out: the session's
    lease lapses and a reaper publishes its `ended` from its record, once, with the reason Tavus
    gives (the user left), not worker_lost."""
    victim, sid, ready = await ready_in_a_worker_process(h, worker_session_lease_s=1.0)
    victim.send_signal(signal.SIGSTOP)  # frozen: it can neither see the end nor publish
    h.sim.join(ready["conversation_id"])
    h.sim.leave(ready["conversation_id"])  # Tavus ends the call; nothing is left to find
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await h.start_worker(
        worker_reaper_interval_s=3600, worker_session_lease_s=1.0, worker_reaper_grace_s=0.5
    )
    ended = await h.wait_for(sid, "ended", timeout_s=20)
    assert ended["reason"] == "participant_left"
    await asyncio.sleep(2.5)  # later lease checks find the record finished
    assert h.statuses(sid) == ["accepted", "ready", "ended"]


async def test_lease_of_a_live_session_is_renewed_not_reaped(h: Harness) -> None:
    """A live session's lapsing lease is re-armed by the reapers; the session is never ended."""
    await h.start_worker(worker_reaper_interval_s=3600, worker_session_lease_s=0.5)
    body = job()
    await h.publish(body)
    await h.wait_for(body["session_id"], "ready")
    await asyncio.sleep(2.5)  # several lease cycles
    assert h.statuses(body["session_id"]) == ["accepted", "ready"]


async def test_a_retry_waiting_longer_than_the_lease_is_not_taken_for_lost(h: Harness) -> None:
    """Attempt 1 wrote its note and failed transiently; its retry waits 3 s in a delay queue,
    longer than lease + grace. No reaper ends the session as lost meanwhile: attempt 2 starts it."""
    await h.start_worker(
        worker_reaper_interval_s=3600,
        worker_session_lease_s=0.5,
        worker_reaper_grace_s=0.3,
        worker_retry_delays_s=[3.0],
    )
    h.sim.faults.fail_next("POST /v2/conversations", n=2, status=503)  # both client tries
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "retrying")
    ready = await h.wait_for(sid, "ready", timeout_s=20)
    assert ready["attempt"] == 2
    await asyncio.sleep(1.0)  # lapsed leases of the live session are re-armed, not reaped
    assert h.statuses(sid) == ["accepted", "retrying", "accepted", "ready"]


async def test_last_attempt_failing_before_its_own_note_gets_one_outcome(h: Harness) -> None:
    """Attempt 1 wrote a note and was retried; attempt 2 fails in its lookup (a 401), before
    writing a note of its own. Its `failed` is the one outcome: the earlier note does not lapse
    into a reaper's `ended(worker_lost)`."""
    await h.start_worker(
        worker_reaper_interval_s=3600,
        worker_session_lease_s=0.5,
        worker_reaper_grace_s=0.3,
        worker_max_attempts=2,
        worker_retry_delays_s=[1.0],
    )
    h.sim.faults.fail_next("POST /v2/conversations", n=2, status=503)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "retrying")  # attempt 1 is over (its create looked up, too)
    h.sim.faults.fail_next("GET /v2/conversations", n=1, status=401)  # attempt 2's lookup
    failed = await h.wait_for(sid, "failed", timeout_s=20)
    assert failed["attempt"] == 2 and failed["error"]["code"] == "tavus_auth"
    await asyncio.sleep(2.0)  # several leases and grace periods later
    assert h.statuses(sid) == ["accepted", "retrying", "failed"]


async def test_no_provider_call_before_the_session_note_is_on_the_broker(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker refuses the session's note (as when the connection drops): the worker creates
    nothing at Tavus and gives the job back; the next delivery starts it once, with its note, so
    a reaper can finish it if this worker dies (F9: a cut-off worker's create could otherwise
    land beside the one of a worker that took over the redelivered job)."""
    app = await h.start_worker()
    write_record = app.records.write
    refused: list[str] = []

    async def refuse_once(record: SessionRecord, *args: object, **kwargs: object) -> None:
        if not refused:
            refused.append(record.session_id)
            assert h.created_conversations(record.session_id) == []  # nothing created before it
            raise BrokerUnavailable("the broker connection is down (test)")
        await write_record(record, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.records, "write", refuse_once)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    assert refused == [sid]
    assert h.created_conversations(sid) == [ready["conversation_id"]]  # one create in all
    record = None
    for _ in range(50):  # the ready record replaces the first one just after `ready`
        record = await app.records.read(sid)
        if record is not None:
            break
        await asyncio.sleep(0.1)
    assert record is not None and record.session_id == sid and not record.finished
    assert h.statuses(sid).count("ready") == 1


async def test_the_sweep_and_the_lease_path_of_one_reaper_finish_a_session_once(
    h: Harness,
) -> None:
    """One worker's sweep and its lease path reach the same orphan at the same moment (a claim
    is the worker's, not one path's, so both could take it): the session gets one outcome."""
    victim, sid, ready = await ready_in_a_worker_process(
        h, worker_session_lease_s=60.0, tavus_avatar_mode="pipecat_daily", **pipecat_settings()
    )
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    app = await h.start_worker(worker_reaper_interval_s=3600, worker_reaper_grace_s=0.5)
    reaper = app.reaper
    assert reaper is not None
    record = await app.records.read(sid)
    assert record is not None
    h.sim.faults.latency("POST /v2/conversations/{conversation_id}/end", 0.5)  # both get inside
    await reaper.sweep_once()  # sees the orphan for the first time
    await asyncio.sleep(0.6)  # past the grace period, for the sweep and for the lapsed record
    lapsed = record.model_copy(update={"unclaimed_since": time.time() - 1.0})
    await asyncio.gather(reaper.sweep_once(), reaper.lease_lapsed(lapsed))
    await h.wait_for(sid, "ended")
    await asyncio.sleep(1.0)
    outcomes = [e.get("reason") for e in h.of(sid) if e["status"] in ("ended", "failed")]
    assert outcomes == ["worker_lost"], h.statuses(sid)
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"


async def test_a_session_whose_record_the_broker_lost_is_released_not_leaked(h: Harness) -> None:
    """A dead worker's session whose record queue stands empty for much longer than a lease cycle
    (the broker dropped the record): the sweep ends its conversation and publishes
    ended(worker_lost), instead of waiting for a record that never comes back."""
    victim, sid, ready = await ready_in_a_worker_process(h)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    assert h.connection is not None
    channel = await h.connection.channel()
    record_queue = await channel.get_queue(h.topo.record_queue(sid), ensure=False)
    await record_queue.purge()  # the record is gone, its queue stays
    await h.start_worker(
        worker_reaper_interval_s=0.3, worker_reaper_grace_s=0.5, worker_session_lease_s=1.0
    )
    ended = await h.wait_for(sid, "ended", timeout_s=30)
    assert ended["reason"] == "worker_lost"
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"
    await asyncio.sleep(1.0)
    assert h.statuses(sid) == ["accepted", "ready", "ended"]


async def test_a_dead_workers_session_stopped_while_nobody_ran_it_ends_stopped(h: Harness) -> None:
    """A stop sent after a worker died with a live session, before any worker took it over, is
    what ends it: the reaper that finishes the session publishes `ended` `stopped`, not
    `worker_lost` (here with adoption off, the path where the reaper ends the call)."""
    victim, sid, ready = await ready_in_a_worker_process(h)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await h.start_worker(
        worker_adopt_sessions=False, worker_reaper_interval_s=0.2, worker_reaper_grace_s=1.0
    )
    await asyncio.sleep(0.3)  # the rescuer listens for stops
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended", timeout_s=30)
    assert ended["reason"] == "stopped", ended
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"
    await asyncio.sleep(0.5)
    assert h.statuses(sid) == ["accepted", "ready", "ended"]
