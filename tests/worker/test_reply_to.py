"""A job's reply_to may name the producer's queue, never one of the worker's own."""

from __future__ import annotations

import asyncio

import pytest

from tests.worker.harness import Harness, job

pytestmark = pytest.mark.broker


async def test_reply_to_naming_a_workers_own_queue_is_dead_lettered(h: Harness) -> None:
    """A job whose reply_to names the job, dead-letter, retry, claim, record, lost or control
    queue is dead-lettered with a reason naming reply_to, and nothing is started or published."""
    await h.start_worker()
    topo = h.topo
    own = [
        topo.jobs_queue,
        topo.dead_letter_queue,
        topo.retry_queue(0.2),
        topo.claim_queue("s1"),
        topo.record_queue("s1"),
        topo.lost_queue,
        topo.control_queue("w1"),
    ]
    bodies = [job() for _ in own]
    for body, name in zip(bodies, own, strict=True):
        await h.publish(body, reply_to=name)
    dead = await h.dead_letters(len(own))
    reasons = sorted(d.headers["x-avatar-error"] for d in dead)
    assert reasons == sorted(
        f"reply_to {name!r} names one of the worker's own queues; events go to a queue of the "
        "producer's"
        for name in own
    )
    await asyncio.sleep(0.3)
    assert [e for b in bodies for e in h.of(b["session_id"])] == []
    assert h.sim.calls_to("POST /v2/conversations") == []
    assert await h.queue_depth(topo.jobs_queue) == 0
