"""A worker whose connection drops just as it starts taking jobs again (a slot was freed) takes
jobs once the broker is back: the consumer restart the drop broke is done again on reconnect, and
the failure is one warning line (`intake.refresh_failed`), not an unhandled task's traceback."""

from __future__ import annotations

import logging
from typing import Any

import aiormq
import pytest

from tests.reliability.env import ReliabilityHarness, poll_until
from tests.reliability.test_broker_faults import alive, reconnected
from tests.worker.harness import job

pytestmark = pytest.mark.broker


async def test_a_consumer_restart_broken_by_a_dropped_connection_is_done_again_on_reconnect(
    h: ReliabilityHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    proxy = await h.proxy()
    worker = await h.start_proxied_worker(proxy, worker_max_sessions=1)
    intake = worker.intake
    assert intake is not None
    first = job(participant_left_timeout_s=0)
    await h.publish(first)
    ready = await h.wait_for(first["session_id"], "ready")
    channel = intake._channel
    assert channel is not None
    set_qos = channel.set_qos
    dropped = []

    async def dropping(*args: Any, **kwargs: Any) -> Any:
        # The connection dies under the first consumer restart, and every one tried while it
        # is down fails the same way.
        if not dropped or proxy.is_down:
            if not dropped:
                proxy.cut(down_s=2.0)
            dropped.append(True)
            raise aiormq.exceptions.AMQPConnectionError("Server connection unexpectedly closed")
        return await set_qos(*args, **kwargs)

    monkeypatch.setattr(channel, "set_qos", dropping)
    h.sim.join(ready["conversation_id"])
    h.sim.leave(ready["conversation_id"])  # the session ends: its slot is free
    ended = await h.wait_for(first["session_id"], "ended", timeout_s=30)
    assert ended["reason"] == "participant_left", ended
    assert await poll_until(lambda: bool(dropped), timeout_s=10), "no consumer restart was tried"
    await reconnected(worker)
    second = job()
    await h.publish(second)
    await h.wait_for(second["session_id"], "ready", timeout_s=20)
    alive(h)
    unhandled = [str(r.msg) for r in caplog.records if "never retrieved" in str(r.msg)]
    assert not unhandled, unhandled
