"""One Tavus persona per definition across workers: find-or-create is locked on the broker."""

from __future__ import annotations

import asyncio

import pytest

from tests.worker.harness import Harness, job

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_two_workers_starting_a_new_persona_at_once_create_one_persona(h: Harness) -> None:
    """Two worker processes starting the first two sessions of a new persona definition at the
    same moment use one Tavus persona, created once."""
    # Each worker takes one job, and creating a persona is slow: without a lock across workers,
    # the second one searches while the first is still creating.
    for _ in range(2):
        await h.spawn_worker_process(worker_max_sessions=1, worker_warm_processes=0)
    h.sim.faults.latency("POST /v2/personas", 1.0)
    persona = {"persona_name": "Tutor", "system_prompt": "You teach chess.", "context": "kids"}
    first, second = job(persona=persona), job(persona=persona)
    await asyncio.gather(h.publish(first), h.publish(second))
    ready = [await h.wait_for(b["session_id"], "ready", timeout_s=30) for b in (first, second)]
    assert {r["worker_id"] for r in ready} == {f"{h.prefix}-w0", f"{h.prefix}-w1"}
    assert len(h.sim.calls_to("POST /v2/personas")) == 1
    personas = {h.sim.conversations[r["conversation_id"]].persona_id for r in ready}
    assert len(personas) == 1 and None not in personas
