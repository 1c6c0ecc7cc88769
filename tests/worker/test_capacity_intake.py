"""Capacity per mode at intake: a worker whose pipecat_daily slots are full still runs `auto` jobs
as phoenix_rest (saying why), and leaves explicit pipecat_daily jobs for a worker with room,
without a hot requeue loop."""

from __future__ import annotations

import asyncio

import pytest

from tests.worker.harness import Harness, job
from tests.worker.test_pipecat_daily import pipecat_settings, start

pytestmark = pytest.mark.broker


async def test_full_pipecat_slots_send_auto_to_phoenix_and_defer_explicit_jobs(h: Harness) -> None:
    """With its one pipecat_daily slot taken, an `auto` job runs as phoenix_rest with a
    fallback_reason naming the capacity, and an explicit pipecat_daily job waits (no event, not
    dead-lettered, its attempt unchanged) until the slot frees, then runs as pipecat_daily."""
    await start(h, **{**pipecat_settings(), "worker_max_pipecat_sessions": 1})
    first = job(mode="auto")
    await h.publish(first)
    ready = await h.wait_for(first["session_id"], "ready", timeout_s=60)
    assert ready["mode"] == "pipecat_daily"
    second = job(mode="auto")
    await h.publish(second)
    fallback = await h.wait_for(second["session_id"], "ready", timeout_s=60)
    assert fallback["mode"] == "phoenix_rest"
    assert "pipecat_daily is at capacity on this worker" in fallback["fallback_reason"]
    explicit = job(mode="pipecat_daily")
    await h.publish(explicit)
    await asyncio.sleep(2.0)  # several retry delays: it waits, it does not fail
    assert h.statuses(explicit["session_id"]) == []
    await h.stop_session(first["session_id"])
    late = await h.wait_for(explicit["session_id"], "ready", timeout_s=60)
    assert late["mode"] == "pipecat_daily" and late["attempt"] == 1
    assert await h.dead_letters(0, timeout_s=0.5) == []
