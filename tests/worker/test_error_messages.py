"""Errors a user or an operator reads name what failed, never an empty string."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from pipelines.errors import describe_error
from tests.worker.harness import Harness, job
from tests.worker.test_pipecat_daily import start

pytestmark = pytest.mark.broker


def test_an_exception_without_text_is_named_by_its_type() -> None:
    """A timeout (whose str() is empty) is described as `TimeoutError`, never as ''."""
    assert describe_error(TimeoutError()) == "TimeoutError"
    assert describe_error(ValueError("bad line")) == "ValueError: bad line"


async def test_a_failed_release_names_the_resource_and_the_error(h: Harness) -> None:
    """When the Daily room cannot be deleted as a pipecat_daily session ends, the log line says
    which room and why."""
    await start(h)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready", timeout_s=30)
    h.sim.faults.fail_next(f"DELETE /v1/rooms/aw-{sid}", n=50, status=500)
    with capture_logs() as logs:
        await h.stop_session(sid)
        await h.wait_for(sid, "ended", timeout_s=30)
        await asyncio.sleep(0.2)
    failures = [e for e in logs if e["event"] == "session.release_failed"]
    assert failures, [e["event"] for e in logs]
    for failure in failures:
        assert failure["resource"] == f"Daily room aw-{sid}"
        assert failure["error"].startswith(f"releasing the Daily room aw-{sid} failed: ")
        assert "Daily" in failure["error"].split("failed: ", 1)[1]
