"""What the worker does with deliveries: bad input, duplicates, capacity, stop and shutdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.worker.harness import Harness, job

pytestmark = pytest.mark.broker

BAD_BODIES = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"session_id": "ok-1", "version": 2}).encode(), "unsupported contract version 2"),
    (json.dumps({"session_id": "ok-2", "replica": "r1"}).encode(), "unknown field `replica`"),
    (json.dumps({"session_id": "bad id!"}).encode(), "field `session_id`"),
    (json.dumps({"mode": "auto"}).encode(), "field `session_id` is required"),
    (json.dumps({"session_id": "ok-3", "max_duration_s": 5}).encode(), "field `max_duration_s`"),
    (json.dumps({"session_id": "ok-4", "not_after": "2030-01-01T00:00:00"}).encode(), "not_after"),
    (json.dumps({"session_id": "x", "metadata": {"k": "v" * 9000}}).encode(), "limit is 8192"),
    (json.dumps({"session_id": "big", "custom_greeting": "x" * 70_000}).encode(), "limit is 65536"),
]


async def test_invalid_jobs_are_dead_lettered_with_their_reason_and_the_worker_goes_on(
    h: Harness,
) -> None:
    """Every kind of invalid job lands in the DLQ with x-avatar-error; a valid one after it runs."""
    await h.start_worker()
    for body, _ in BAD_BODIES:
        await h.publish(body)
    good = job()
    await h.publish(good)
    await h.wait_for(good["session_id"], "ready")
    dead = await h.dead_letters(len(BAD_BODIES))
    assert len(dead) == len(BAD_BODIES)
    by_body = {d.body: d.headers["x-avatar-error"] for d in dead}
    for body, expected in BAD_BODIES:
        assert expected in by_body[body], (expected, by_body[body])
    assert all("\n" not in reason for reason in by_body.values())
    assert {e["session_id"] for e in h.events} == {good["session_id"]}  # no event storm


async def test_duplicate_job_starts_one_session(h: Harness) -> None:
    """The same job published twice gives one conversation and one accepted/ready."""
    await h.start_worker()
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.publish(body)
    await h.wait_for(sid, "ready")
    await asyncio.sleep(0.5)
    assert h.statuses(sid) == ["accepted", "ready"]
    assert len(h.created_conversations(sid)) == 1
    assert await h.queue_depth() == 0


async def run_until_stopped(h: Harness) -> tuple[dict[str, Any], str]:
    """A job run to `ready` on a started worker, then stopped until `ended`: (its body, its id)."""
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready")
    await h.stop_session(sid)
    await h.wait_for(sid, "ended")
    return body, sid


async def test_job_for_a_finished_session_does_not_start_it_again(h: Harness) -> None:
    """A job redelivered after its session ended, even to another worker, starts nothing."""
    await h.start_worker()
    body, sid = await run_until_stopped(h)
    other = await h.start_worker()
    await h.stop_worker(h.workers[0][0])
    await h.publish(body)
    await asyncio.sleep(1.0)
    assert other.intake is not None
    assert h.statuses(sid) == ["accepted", "ready", "ended"]
    assert len(h.created_conversations(sid)) == 1
    assert await h.queue_depth() == 0


async def test_a_finished_sessions_record_is_kept_for_duplicates_then_deleted(h: Harness) -> None:
    """Within WORKER_FINISHED_RECORD_KEEP_S a copy of a finished session's job is dropped; then
    the record's queue is deleted, so the broker holds a queue only for live and recent sessions
    (each record queue costs every node a Raft group and file handles)."""
    app = await h.start_worker(worker_finished_record_keep_s=2.0)
    body, sid = await run_until_stopped(h)
    await h.publish(body)  # a late copy, within the keep window
    await asyncio.sleep(0.5)
    assert h.statuses(sid) == ["accepted", "ready", "ended"]
    exists, record = await app.records.look(sid)
    assert exists and record is not None and record.finished
    for _ in range(50):
        exists, _record = await app.records.look(sid)
        if not exists:
            break
        await asyncio.sleep(0.2)
    assert not exists, "the finished session's record queue is still there after its keep window"
    assert app.records.finished_kept == 0
    assert len(h.created_conversations(sid)) == 1


async def test_two_workers_given_the_same_job_start_it_once(h: Harness) -> None:
    """Copies of one job consumed by two workers at once still make a single conversation."""
    await h.start_worker()
    await h.start_worker()
    h.sim.faults.latency("GET /v2/conversations", 0.2)  # widen the race window
    body = job()
    sid = body["session_id"]
    for _ in range(4):
        await h.publish(body)
    await h.wait_for(sid, "ready")
    await asyncio.sleep(1.0)
    assert len(h.created_conversations(sid)) == 1
    assert h.statuses(sid).count("ready") == 1


async def test_full_worker_leaves_jobs_in_the_queue_and_resumes_when_a_slot_frees(
    h: Harness,
) -> None:
    """With WORKER_MAX_SESSIONS=1 a second job waits in the queue until the first session ends."""
    await h.start_worker(worker_max_sessions=1)
    first, second = job(), job()
    await h.publish(first)
    await h.wait_for(first["session_id"], "ready")
    await h.publish(second)
    await asyncio.sleep(0.5)
    assert h.statuses(second["session_id"]) == []
    assert await h.queue_depth() == 1
    await h.stop_session(first["session_id"])
    await h.wait_for(first["session_id"], "ended")
    await h.wait_for(second["session_id"], "ready")


async def test_stop_for_an_unknown_session_is_harmless(h: Harness) -> None:
    """A stop command for a session no worker runs changes nothing; live sessions go on."""
    await h.start_worker()
    body = job()
    await h.publish(body)
    await h.wait_for(body["session_id"], "ready")
    await h.stop_session("no-such-session")
    await asyncio.sleep(0.3)
    assert h.statuses(body["session_id"]) == ["accepted", "ready"]


async def test_shutdown_drains_then_ends_live_sessions_and_leaves_queued_jobs(h: Harness) -> None:
    """SIGTERM: no new jobs taken; live sessions end with worker_shutdown after the drain timeout."""
    app = await h.start_worker(worker_max_sessions=1, worker_drain_timeout_s=0.5)
    live, waiting = job(), job()
    await h.publish(live)
    ready = await h.wait_for(live["session_id"], "ready")
    await h.publish(waiting)
    await h.stop_worker(app)
    ended = await h.wait_for(live["session_id"], "ended")
    assert ended["reason"] == "worker_shutdown"
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"
    assert h.statuses(waiting["session_id"]) == []
    assert await h.queue_depth() == 1


async def test_a_session_that_ends_during_drain_needs_no_forced_end(h: Harness) -> None:
    """A session stopped while the worker drains ends with its own reason, not worker_shutdown."""
    app = await h.start_worker(worker_drain_timeout_s=10)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready")
    app.request_shutdown()
    await asyncio.sleep(0.2)
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended")
    assert ended["reason"] == "stopped"


async def test_a_copy_of_a_job_whose_session_this_worker_is_taking_over_starts_nothing(
    h: Harness,
) -> None:
    """One holder per session on a worker too: while this worker's reaper holds a session's
    claim (it is adopting the session of a worker that died), a redelivered copy of its job
    arriving here does not start it a second time beside the adoption."""
    app = await h.start_worker()
    body = job()
    sid = body["session_id"]
    assert await app.claims.claim(sid)  # as the reaper does before it adopts
    await h.publish(body)
    await asyncio.sleep(1.5)
    assert h.statuses(sid) == []
    assert h.created_conversations(sid) == []
    assert await h.queue_depth() == 0  # settled: the adoption publishes the session's outcome
    assert app.claims.holds(sid)  # the start that gave up did not release the reaper's claim
