"""A session taken over during a broker outage: the worker that lost the broker publishes nothing
more for it, even when taking its claims back after the reconnect is slow (many claims, a busy
broker), so the session has one `ready` and one outcome, the new owner's."""

from __future__ import annotations

import asyncio

import pytest

from tests.reliability.env import ReliabilityHarness, poll_until
from tests.reliability.test_broker_faults import alive, reconnected
from tests.worker.harness import job

pytestmark = pytest.mark.broker


async def test_a_session_taken_over_in_an_outage_gets_no_event_from_its_first_worker(
    h: ReliabilityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
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
