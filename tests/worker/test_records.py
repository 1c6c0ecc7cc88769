"""Session records on the broker: a worker that lost its claim without knowing yet (an outage)
cannot overwrite the record of a session another worker finished, so no lease of its runs out
into a second outcome."""

from __future__ import annotations

import pytest

from tests.worker.harness import Harness
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
