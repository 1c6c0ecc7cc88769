"""The join URL in one call (`worker.client`): direct reply-to, from aio-pika and from pika."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pika
import pytest

from tests.worker.harness import Harness, job
from worker.client import DIRECT_REPLY_TO, NoReplyError, open_session, request_session

pytestmark = pytest.mark.broker


async def test_one_call_returns_ready_with_the_join_url_and_the_session_keeps_running(
    h: Harness,
) -> None:
    """`request_session` returns `ready` with the URL and the caller's correlation id; the session
    goes on until stopped, and the worker is unharmed by the reply channel being gone."""
    await h.start_worker()
    body = job()
    sid = body["session_id"]
    connection = await aio_pika.connect(h.url)
    try:
        reply = await request_session(
            connection, body, timeout_s=20, correlation_id="web-req-7", topology=h.topo
        )
    finally:
        await connection.close()
    assert reply.status == "ready" and reply.session_id == sid
    assert reply.correlation_id == "web-req-7"
    assert reply.join_url is not None and reply.join_url == reply.event["conversation_url"]
    assert h.statuses(sid) == ["accepted", "ready"]  # still running
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended")  # published to a reply-to nobody holds any more
    assert ended["reason"] == "stopped"


async def test_the_same_call_can_follow_the_later_events_until_the_end(h: Harness) -> None:
    """`open_session` gives `ready` first and then yields the session's later events up to `ended`."""
    await h.start_worker()
    body = job()
    connection = await aio_pika.connect_robust(h.url)
    try:
        async with open_session(connection, body, timeout_s=20, topology=h.topo) as call:
            assert call.first is not None and call.first.status == "ready"
            assert [r.status for r in call.seen] == ["accepted", "ready"]
            await h.stop_session(body["session_id"])
            later = [reply async for reply in call.follow(timeout_s=20)]
    finally:
        await connection.close()
    assert [r.status for r in later] == ["ended"]
    assert later[0].event["reason"] == "stopped"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"replica_id": "r000000000ff"}, "failed"),
        ({"not_after": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}, "expired"),
    ],
)
async def test_the_one_call_returns_the_failed_or_expired_that_came_instead_of_ready(
    h: Harness, fields: dict[str, Any], status: str
) -> None:
    """A job that cannot start returns its `failed` (with the error) or `expired` event."""
    await h.start_worker()
    connection = await aio_pika.connect(h.url)
    try:
        reply = await request_session(connection, job(**fields), timeout_s=20, topology=h.topo)
    finally:
        await connection.close()
    assert reply.status == status and reply.join_url is None
    if status == "failed":
        assert reply.error is not None and reply.error.code == "replica_not_found"


async def test_no_worker_means_a_timeout_that_says_so(h: Harness) -> None:
    """Without a worker the call gives up after its timeout, saying that no event came at all."""
    connection = await aio_pika.connect(h.url)
    try:
        with pytest.raises(NoReplyError, match="no event at all"):
            await request_session(connection, job(), timeout_s=0.5, topology=h.topo)
    finally:
        await connection.close()


def pika_request(url: str, exchange: str, body: dict[str, Any], timeout_s: float) -> list[Any]:
    """The raw pattern with pika (as docs/contract.md describes it): consume the pseudo-queue
    amq.rabbitmq.reply-to in no-ack mode, then publish the job with reply_to on the same channel."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        replies: list[Any] = []

        def on_reply(_ch: Any, _method: Any, props: Any, raw: bytes) -> None:
            replies.append((props.correlation_id, json.loads(raw)))

        channel.basic_consume(DIRECT_REPLY_TO, on_reply, auto_ack=True)
        channel.basic_publish(
            exchange,
            "session.start",
            json.dumps(body).encode(),
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                reply_to=DIRECT_REPLY_TO,
                correlation_id="pika-42",
            ),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not any(e["status"] == "ready" for _, e in replies):
            connection.process_data_events(time_limit=0.1)
        return replies
    finally:
        connection.close()


async def test_a_second_amqp_client_gets_ready_through_direct_reply_to(h: Harness) -> None:
    """pika, following the documented raw pattern, gets `accepted` and `ready` with its
    correlation id on direct reply-to."""
    await h.start_worker()  # it declares the topology the job is published to
    body = job(session_id=f"pika-{uuid.uuid4().hex[:8]}")
    replies = await asyncio.to_thread(pika_request, h.url, h.topo.jobs_exchange, body, 20.0)
    assert [e["status"] for _, e in replies] == ["accepted", "ready"]
    assert {cid for cid, _ in replies} == {"pika-42"}
    assert replies[-1][1]["conversation_url"]
    await h.stop_session(body["session_id"])
    await h.wait_for(body["session_id"], "ended")
