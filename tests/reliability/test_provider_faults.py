"""Provider faults through the simulator: 429 bursts with Retry-After, 5xx, timeouts, slow
answers, the concurrency cap and out of credits each give the documented `retrying`/`failed`,
with backoff between attempts and a bounded number of calls (never a hot loop).

Harness settings: PROVIDER_RETRY_ATTEMPTS=2 (calls per provider request), WORKER_MAX_ATTEMPTS=3
(deliveries per job), WORKER_RETRY_DELAYS_S=0.2,0.4.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.reliability.env import ReliabilityHarness, poll_until
from tests.worker.harness import job

pytestmark = pytest.mark.broker

CREATE = "POST /v2/conversations"
MAX_ATTEMPTS = 3
PROVIDER_ATTEMPTS = 2


def gaps_s(h: ReliabilityHarness, endpoint: str) -> list[float]:
    """Seconds between consecutive calls the simulator saw on an endpoint."""
    times = [c.at_s for c in h.sim.calls_to(endpoint)]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_429_burst_with_retry_after_is_waited_out_then_succeeds(
    h: ReliabilityHarness,
) -> None:
    """Three 429s with Retry-After 0.3 s: the client waits the hint between calls, the job is
    retried once after the delay step covering the hint (0.4 s), and attempt 2 is ready."""
    await h.start_worker()
    h.sim.faults.fail_next(CREATE, n=3, status=429, retry_after_s=0.3)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready", timeout_s=20)
    retrying = [e for e in h.of(sid) if e["status"] == "retrying"]
    assert [e["error"]["code"] for e in retrying] == ["tavus_rate_limited"]
    assert retrying[0]["delay_s"] == 0.4 and retrying[0]["error"]["retryable"] is True
    assert ready["attempt"] == 2
    calls = h.sim.calls_to(CREATE)
    assert [c.status for c in calls] == [429, 429, 429, 200]
    assert all(gap >= 0.29 for gap in gaps_s(h, CREATE)), gaps_s(h, CREATE)
    assert len(h.created_conversations(sid)) == 1


async def test_5xx_burst_is_retried_with_backoff_and_one_conversation(
    h: ReliabilityHarness,
) -> None:
    """Two 503s on create: one `retrying` (tavus_unavailable, delay 0.2 s), then attempt 2 is
    ready with a single conversation, after no more than attempts × client retries creates."""
    await h.start_worker()
    h.sim.faults.fail_next(CREATE, n=2, status=503)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready", timeout_s=20)
    assert h.statuses(sid) == ["accepted", "retrying", "accepted", "ready"]
    retrying = h.of(sid)[1]
    assert retrying["error"]["code"] == "tavus_unavailable" and retrying["delay_s"] == 0.2
    assert ready["attempt"] == 2
    assert len(h.sim.calls_to(CREATE)) <= 2 * PROVIDER_ATTEMPTS
    assert len(h.created_conversations(sid)) == 1


async def test_lasting_5xx_outage_gives_up_after_max_attempts_without_a_hot_loop(
    h: ReliabilityHarness,
) -> None:
    """Tavus answering 500 to everything: the job ends `failed` (retryable false, "gave up after
    3 attempts") and in the DLQ, with delays 0.2 then 0.4 s, and a bounded number of calls."""
    await h.start_worker()
    h.sim.faults.fail_next("* /v2/**", n=10_000, status=500)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    failed = await h.wait_for(sid, "failed", timeout_s=30)
    await asyncio.sleep(1.0)  # nothing more happens afterwards
    retrying = [e for e in h.of(sid) if e["status"] == "retrying"]
    assert [e["delay_s"] for e in retrying] == [0.2, 0.4]
    assert failed["attempt"] == MAX_ATTEMPTS and failed["error"]["retryable"] is False
    assert "gave up after 3 attempts" in failed["error"]["message"]
    assert len(h.terminal(sid)) == 1
    tavus_calls = [c for c in h.sim.calls if c.provider == "tavus"]
    # each attempt: a lookup (active + ended lists), maybe a cleanup list, each ≤ 2 tries
    assert len(tavus_calls) <= MAX_ATTEMPTS * 4 * PROVIDER_ATTEMPTS, len(tavus_calls)
    [dead] = await h.dead_letters(1)
    assert "after 3 attempts" in dead.headers["x-avatar-error"]
    assert h.created_conversations(sid) == []


@pytest.mark.slow
async def test_create_slower_than_the_provider_timeout_is_retried_and_leaks_nothing(
    h: ReliabilityHarness,
) -> None:
    """Creates that take longer than PROVIDER_TIMEOUT_S give `retrying` provider_timeout; a later
    attempt adopts (or makes) one conversation, creates stay bounded, and a create that lands
    after the session was stopped is ended by the reaper (grace 0.5 s here), so none is left."""
    await h.start_worker(
        provider_timeout_s=0.5,
        worker_reaper_interval_s=0.3,
        worker_reaper_grace_s=0.5,
        worker_session_lease_s=2.0,
    )
    h.sim.faults.latency(CREATE, 1.0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "retrying", timeout_s=20)
    ready = await h.wait_for(sid, "ready", timeout_s=30)
    retrying = [e for e in h.of(sid) if e["status"] == "retrying"]
    assert {e["error"]["code"] for e in retrying} == {"provider_timeout"}
    assert all(e["error"]["retryable"] for e in retrying)
    assert len(h.sim.calls_to(CREATE)) <= MAX_ATTEMPTS * PROVIDER_ATTEMPTS
    assert h.statuses(sid).count("ready") == 1
    h.sim.faults.latency(CREATE, 0)
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended")
    assert ended["attempt"] == ready["attempt"]
    await asyncio.sleep(1.5)  # any create still in flight lands; then the reaper ends it
    await poll_until(
        lambda: not set(h.created_conversations(sid)) & set(h.active_conversations()), 5
    )
    assert [c for c in h.created_conversations(sid) if c in h.active_conversations()] == []
    assert len(h.terminal(sid)) == 1, h.statuses(sid)


async def test_slow_but_in_time_answers_start_the_session_without_retrying(
    h: ReliabilityHarness,
) -> None:
    """Every Tavus call taking 0.3 s (timeout 5 s) is slow, not failed: one create, no retrying."""
    await h.start_worker()
    h.sim.faults.latency("* /v2/**", 0.3)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready", timeout_s=20)
    assert h.statuses(sid) == ["accepted", "ready"]
    assert len(h.sim.calls_to(CREATE)) == 1
    h.sim.faults.latency("* /v2/**", 0)
    await h.stop_session(sid)
    await h.wait_for(sid, "ended")


async def test_concurrency_cap_is_retried_with_backoff_then_fails_and_dead_letters(
    h: ReliabilityHarness,
) -> None:
    """A Tavus account at its concurrency cap: `retrying` tavus_concurrency_limit with delays 0.2
    then 0.4 s, one create per attempt, then `failed` and the job in the DLQ."""
    await h.start_worker()
    h.sim.faults.set_concurrency_cap(0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    failed = await h.wait_for(sid, "failed", timeout_s=20)
    retrying = [e for e in h.of(sid) if e["status"] == "retrying"]
    assert [e["error"]["code"] for e in retrying] == ["tavus_concurrency_limit"] * 2
    assert [e["delay_s"] for e in retrying] == [0.2, 0.4]
    assert failed["error"]["code"] == "tavus_concurrency_limit"
    assert len(h.sim.calls_to(CREATE)) == MAX_ATTEMPTS
    assert all(gap >= 0.2 for gap in gaps_s(h, CREATE)), gaps_s(h, CREATE)
    [dead] = await h.dead_letters(1)
    assert sid.encode() in dead.body


async def test_out_of_credits_fails_at_once_without_retrying(h: ReliabilityHarness) -> None:
    """A 402 from Tavus gives one `failed` tavus_out_of_credits (not retryable) after one create;
    nothing is retried or dead-lettered."""
    await h.start_worker()
    h.sim.faults.set_out_of_credits(True)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    failed = await h.wait_for(sid, "failed")
    await asyncio.sleep(0.5)
    assert h.statuses(sid) == ["accepted", "failed"]
    assert failed["error"] == {
        "code": "tavus_out_of_credits",
        "message": failed["error"]["message"],
        "retryable": False,
    }
    assert len(h.sim.calls_to(CREATE)) == 1
    assert await h.queue_depth(h.topo.dead_letter_queue) == 0


async def test_a_burst_of_jobs_against_a_rate_limited_provider_never_hot_loops(
    h: ReliabilityHarness,
) -> None:
    """Ten jobs while Tavus answers 429 (Retry-After 0.2 s) to the next 10 creates: every job
    ends ready, and creates stay within ten jobs × attempts × client tries."""
    await h.start_worker(worker_max_sessions=10)
    h.sim.faults.fail_next(CREATE, n=10, status=429, retry_after_s=0.2)
    bodies = [job() for _ in range(10)]
    for body in bodies:
        await h.publish(body)
    for body in bodies:
        await h.wait_for(body["session_id"], "ready", timeout_s=30)
    assert len(h.sim.calls_to(CREATE)) <= 10 * MAX_ATTEMPTS * PROVIDER_ATTEMPTS
    for body in bodies:
        assert len(h.created_conversations(body["session_id"])) == 1
        await h.stop_session(body["session_id"])
    for body in bodies:
        await h.wait_for(body["session_id"], "ended")
    assert h.active_conversations() == []
