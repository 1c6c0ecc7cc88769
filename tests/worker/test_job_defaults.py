"""The worker's defaults for what a job leaves out: WORKER_DEFAULT_MAX_DURATION_S."""

from __future__ import annotations

import pytest

from tests.worker.harness import Harness, job
from worker.producer import publish_session_job

pytestmark = pytest.mark.broker


async def test_a_job_without_max_duration_gets_the_workers_default(h: Harness) -> None:
    """A job sent without max_duration_s (through the Python producer) runs for at most the
    worker's WORKER_DEFAULT_MAX_DURATION_S; a job that names one keeps its own."""
    await h.start_worker(worker_default_max_duration_s=120)
    assert h.connection is not None
    without, explicit = job(), job(max_duration_s=600)
    channel = await h.connection.channel()
    for body in (without, explicit):
        await publish_session_job(channel, body, topology=h.topo)
    for body, expected in ((without, 120), (explicit, 600)):
        await h.wait_for(body["session_id"], "ready")
        [cid] = h.created_conversations(body["session_id"])
        assert h.sim.conversations[cid].request["properties"]["max_call_duration"] == expected
