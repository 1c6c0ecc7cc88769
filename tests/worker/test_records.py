"""Session records on the broker: a worker that lost its claim without knowing yet (an outage)
cannot overwrite the record of a session another worker finished, so no lease of its runs out
into a second outcome."""

from __future__ import annotations

import asyncio

import pytest

from tests.worker.harness import Harness, job
from worker.broker import BrokerUnavailable
from worker.core.records import RecordFinished, SessionRecord

pytestmark = pytest.mark.broker


async def test_a_finished_record_is_not_replaced_by_a_late_writer(h: Harness) -> None:
    app = await h.start_worker()
    records = app.records
    sid = "records-finished-1"
    running = SessionRecord(session_id=sid, mode="phoenix_rest", worker_id="first")
    assert await records.open(sid) is None
    await records.write(running, lease_s=60, replace=False)
    await records.finish(running.model_copy(update={"worker_id": "second"}))

    late = running.model_copy(update={"conversation_id": "c-late"})  # the first worker's ready
    with pytest.raises(RecordFinished):
        await records.write(late, lease_s=60, replace=True)

    exists, record = await records.look(sid)
    assert exists and record is not None and record.finished
    assert record.conversation_id is None  # the late record is not in the queue
    async with app.broker.brief_channel("count records") as channel:
        queue = await channel.declare_queue(h.topo.record_queue(sid), passive=True)
        assert queue.declaration_result.message_count == 1


async def test_a_start_whose_record_cannot_be_opened_gives_the_job_back(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the broker drops the connection as a start opens the session's record, the start
    does not go on without one (its queue may not exist, and a record written into it would be
    lost, and with it the session's dead man's switch): the job goes back, and the session
    starts with its record once the broker answers."""
    app = await h.start_worker()
    open_record = app.records.open
    failures = []

    async def dropping_once(session_id: str) -> SessionRecord | None:
        if not failures:
            failures.append(session_id)
            raise BrokerUnavailable("open the session record: connection closed")
        return await open_record(session_id)

    monkeypatch.setattr(app.records, "open", dropping_once)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    assert failures == [sid]
    assert h.statuses(sid) == ["accepted", "ready"]
    for _ in range(50):  # the record naming the conversation is written just after `ready`
        exists, record = await app.records.look(sid)
        if record is not None and record.conversation_id is not None:
            break
        await asyncio.sleep(0.1)
    assert exists and record is not None and record.conversation_id == ready["conversation_id"]
