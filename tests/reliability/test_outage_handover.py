"""A session taken over during a broker outage: the worker that lost the broker publishes nothing
more for it, even when taking its claims back after the reconnect is slow (many claims, a busy
broker), so the session has one `ready` and one outcome, the new owner's. The job the broker
redelivers may find the dead connection's claim still there for a moment (RabbitMQ 4 often
drops it just after the redelivery): the new owner waits for it to go."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from tests.reliability.env import ReliabilityHarness, poll_until
from tests.reliability.test_broker_faults import alive, reconnected
from tests.worker.harness import job
from worker.core import claims

pytestmark = pytest.mark.broker


async def test_a_session_taken_over_in_an_outage_gets_no_event_from_its_first_worker(
    h: ReliabilityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second worker starts the redelivered job and owns the session; the first, once back,
    publishes nothing more for it."""
    proxy = await h.proxy()
    first = await h.start_proxied_worker(proxy)
    retake = first.claims._retake_claims

    async def slow_retake() -> None:  # as with hundreds of claims on a busy broker
        await asyncio.sleep(3.0)
        await retake()

    monkeypatch.setattr(first.claims, "_retake_claims", slow_retake)
    h.sim.faults.latency("POST /v2/conversations", 1.0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "accepted")
    second = await h.start_worker()  # idle: it takes the job the broker requeues
    proxy.cut(down_s=2.0)  # the first worker's create lands while it is cut off
    await reconnected(first)
    taken_over = await poll_until(
        lambda: any(
            e["status"] == "ready" and e["worker_id"] == second.settings.worker_id
            for e in h.of(sid)
        ),
        timeout_s=30,
    )
    assert taken_over, h.of(sid)
    await asyncio.sleep(4.0)  # the first worker's claims are back (lost) by now
    alive(h)
    assert h.statuses(sid).count("ready") == 1, h.of(sid)
    await h.stop_session(sid)  # both workers get it
    await h.wait_terminal(sid)
    await asyncio.sleep(2.0)
    assert len(h.terminal(sid)) == 1, h.statuses(sid)
    assert {e["worker_id"] for e in h.of(sid) if e["status"] != "accepted"} == {
        second.settings.worker_id
    }
    assert h.max_overlapping_conversations(sid) <= 1
    assert h.active_conversations() == []


async def redeliver_with_claim_held(h: ReliabilityHarness, session_id: str) -> aio_pika.Connection:
    """Publish a job, and leave it redelivered while the returned connection holds its claim: as a
    worker whose connection died leaves it when RabbitMQ requeues first and drops claims after."""
    holder = await aio_pika.connect(h.url)
    await (await holder.channel()).declare_queue(h.topo.claim_queue(session_id), exclusive=True)
    await h.publish(job(session_id))
    taker = await holder.channel()
    jobs = await taker.get_queue(h.topo.jobs_queue)
    assert await jobs.get(no_ack=False, timeout=10) is not None
    await taker.close()  # unacked: back in the queue, redelivered
    return holder


async def test_a_redelivered_job_waits_for_the_claim_of_its_dead_connection_to_go(
    h: ReliabilityHarness,
) -> None:
    """A redelivered job whose claim another connection still holds for a moment starts once the
    claim goes (it is not dropped as live elsewhere), with one `ready` and one outcome."""
    sid = job()["session_id"]
    holder = await redeliver_with_claim_held(h, sid)
    try:
        worker = await h.start_worker()
        await asyncio.sleep(1.0)
        assert await h.queue_depth() == 0  # the worker has it
        assert h.of(sid) == []
    finally:
        await holder.close()  # the dying connection's claim goes
    ready = await h.wait_for(sid, "ready")
    assert ready["worker_id"] == worker.settings.worker_id
    await h.stop_session(sid)
    await h.wait_terminal(sid)
    await asyncio.sleep(0.5)
    assert h.statuses(sid) == ["accepted", "ready", "ended"]
    assert h.active_conversations() == []


async def test_a_redelivered_job_whose_claim_stays_held_is_not_started_again(
    h: ReliabilityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivered job whose claim another connection keeps past the wait (a live worker runs
    the session) is dropped as a duplicate: nothing is started for it, even after the claim goes."""
    monkeypatch.setattr(claims, "DYING_CLAIM_WAIT_S", 1.0)
    sid = job()["session_id"]
    holder = await redeliver_with_claim_held(h, sid)
    try:
        await h.start_worker()
        await asyncio.sleep(2.5)
    finally:
        await holder.close()
    await asyncio.sleep(2.0)
    assert h.of(sid) == []
    assert await h.queue_depth() == 0
    assert h.created_conversations(sid) == []
