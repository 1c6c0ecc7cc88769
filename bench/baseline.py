"""The floor for intake throughput: a bare aio-pika consumer making the worker's phoenix_rest calls
(create conversation; for a redelivered job first a find-by-name lookup over active then ended
conversations, as the worker does) and publishing the same accepted/ready events (events exchange +
reply_to, publisher confirms), acking after ready.

Two variants, both measured by bench/run.py in the same run:

- bare (default): no claim, no session record. The floor of a consumer with none of the worker's
  cross-worker guarantees; the gap to it is the price of those guarantees plus the worker's own.
- `BASELINE_GUARANTEES=1`: the same broker bookkeeping the worker needs for the contract's
  guarantees, written bare: the session's claim (an exclusive queue; a copy held elsewhere is
  acked and skipped), its record queue (a quorum queue declared with the worker's own arguments,
  read for a finished record), the leased record in it before the conversation is created, and
  the record replaced by one naming the conversation after `ready` (what lets another worker
  adopt the session). No validation, logging, metrics, retries or following: the gap to it is the
  worker's own overhead.

AMQP_URL may list a cluster's nodes, comma-separated, as the worker's does.

Configured by environment (see `main`); prints "intake.consuming" to stderr once it consumes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx

from worker.amqp_connection import connect_any
from worker.broker import QUORUM, dead_lettering_to
from worker.core.records import LOOKS_ALLOWED, MAX_RECORDS_AHEAD, RECORD_EXPIRES_S

PAGE = 100
ENDED_PAGES = 10
LEASE_S = 60


def record_arguments(jobs_queue: str) -> dict[str, Any]:
    """The record queue's arguments, as worker.core.records.SessionRecords.arguments()."""
    return {
        **QUORUM,
        "x-expires": RECORD_EXPIRES_S * 1000,
        "x-delivery-limit": LOOKS_ALLOWED,
        **dead_lettering_to("", f"{jobs_queue}.lost"),
    }


class Baseline:
    def __init__(
        self,
        http: httpx.AsyncClient,
        channel: aio_pika.abc.AbstractChannel,
        events: aio_pika.abc.AbstractExchange,
        replica_id: str,
        prefix: str,
        *,
        guarantees: bool = False,
        jobs_queue: str = "",
        bookkeeping: aio_pika.abc.AbstractChannel | None = None,
        connection: aio_pika.abc.AbstractConnection | None = None,
    ) -> None:
        self.connection = connection
        self.guarantees = guarantees
        self.jobs_queue = jobs_queue
        self.bookkeeping = bookkeeping
        self.http = http
        self.channel = channel
        self.events = events
        self.replica_id = replica_id
        self.prefix = prefix

    async def find(self, name: str) -> tuple[str, bool] | None:
        """(conversation id, finished) of the conversation with that name, like the worker."""
        page = 1
        while True:  # every active conversation
            listed = await self.list(status="active", page=page)
            for c in listed["data"]:
                if c["conversation_name"] == name:
                    return c["conversation_id"], False
            if len(listed["data"]) < PAGE or page * PAGE >= listed["total_count"]:
                break
            page += 1
        for page in range(1, ENDED_PAGES + 1):
            listed = await self.list(status="ended", page=page)
            for c in listed["data"]:
                if c["conversation_name"] == name:
                    return c["conversation_id"], True
            if len(listed["data"]) < PAGE or page * PAGE >= listed["total_count"]:
                break
        return None

    async def list(self, *, status: str, page: int) -> dict[str, Any]:
        reply = await self.http.get(
            "/conversations", params={"status": status, "limit": PAGE, "page": page}
        )
        reply.raise_for_status()
        listed: dict[str, Any] = reply.json()
        return listed

    async def publish(
        self, message: aio_pika.abc.AbstractIncomingMessage, event: dict[str, Any]
    ) -> None:
        body = json.dumps(event).encode()
        kind = f"session.{event['status']}"
        await self.events.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                type=kind,
                correlation_id=message.correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=kind,
        )
        if message.reply_to:
            await self.channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    type=kind,
                    correlation_id=message.correlation_id,
                ),
                routing_key=message.reply_to,
            )

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            await self.start(message)
        except (httpx.HTTPError, aio_pika.exceptions.AMQPError) as exc:
            # The worker retries transient provider errors too; here the job simply goes back.
            error = {"event": "baseline.error", "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(error), file=sys.stderr, flush=True)
            await message.nack(requeue=True)

    async def start(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        job = json.loads(message.body)
        sid = job["session_id"]
        common = {
            "session_id": sid,
            "worker_id": "baseline",
            "attempt": 1,
            "metadata": job.get("metadata"),
            "mode": "phoenix_rest",
        }
        had_record = False
        if self.guarantees:
            claimed, had_record, finished = await self.claim_and_read(sid)
            if not claimed or finished:
                await message.ack()
                return
        # Like the worker: a first delivery with no record cannot have a conversation yet, so
        # only a redelivered job (or one with a record) is looked up.
        found = await self.find(self.prefix + sid) if message.redelivered or had_record else None
        if found is not None and found[1]:
            await message.ack()
            return
        await self.publish(message, {**common, "status": "accepted", "at": now()})
        note = {**common, "reply_to": message.reply_to, "job": job}
        if self.guarantees:
            await self.write_note(sid, note)
        reply = await self.http.post(
            "/conversations",
            json={
                "replica_id": self.replica_id,
                "conversation_name": self.prefix + sid,
                "properties": {"max_call_duration": job.get("max_duration_s", 1800)},
            },
        )
        reply.raise_for_status()
        conversation = reply.json()
        await self.publish(
            message,
            {
                **common,
                "status": "ready",
                "at": now(),
                "room_url": None,
                "user_token": None,
                "conversation_id": conversation["conversation_id"],
                "conversation_url": conversation["conversation_url"],
                "fallback_reason": None,
            },
        )
        if self.guarantees:
            conversation_id = conversation["conversation_id"]
            await self.replace_note(sid, {**note, "conversation_id": conversation_id})
        await message.ack()

    async def claim_and_read(self, sid: str) -> tuple[bool, bool, bool]:
        """(claimed here, a record exists, the record says finished)."""
        assert self.bookkeeping is not None
        try:
            await self.bookkeeping.declare_queue(
                f"{self.jobs_queue}.live.{sid}", exclusive=True, auto_delete=False, robust=False
            )
        except aio_pika.exceptions.ChannelLockedResource:
            # The server closed the channel; a duplicate is rare, so a new one is fine.
            assert self.connection is not None
            self.bookkeeping = await self.connection.channel(publisher_confirms=True)
            return False, False, False
        record = await self.bookkeeping.declare_queue(
            f"{self.jobs_queue}.record.{sid}",
            durable=True,
            arguments=record_arguments(self.jobs_queue),
            robust=False,
        )
        if not record.declaration_result.message_count:
            return True, False, False
        note = await record.get(no_ack=False, fail=False)
        if note is None:
            return True, False, False
        await note.nack(requeue=True)
        return True, True, bool(json.loads(note.body).get("finished"))

    async def write_note(self, sid: str, note: dict[str, Any]) -> str:
        """Publish the leased record (confirmed); returns its message id."""
        assert self.bookkeeping is not None
        message = aio_pika.Message(
            json.dumps(note).encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            expiration=LEASE_S,
            message_id=uuid.uuid4().hex,
        )
        await self.bookkeeping.default_exchange.publish(
            message, routing_key=f"{self.jobs_queue}.record.{sid}"
        )
        assert message.message_id is not None
        return message.message_id

    async def replace_note(self, sid: str, note: dict[str, Any]) -> None:
        """As the worker's record replace: the new record first, then the ones ahead taken off
        and the new one given back."""
        assert self.bookkeeping is not None
        written = await self.write_note(sid, note)
        queue = await self.bookkeeping.get_queue(f"{self.jobs_queue}.record.{sid}", ensure=False)
        for _ in range(MAX_RECORDS_AHEAD + 1):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            if message.message_id == written:
                await message.nack(requeue=True)
                break
            await message.ack()


def now() -> str:
    return datetime.now(UTC).isoformat()


async def main() -> None:
    env = os.environ
    connection = await connect_any(env["AMQP_URL"], timeout_s=30)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=int(env.get("WORKER_MAX_SESSIONS", "10")))
    events = await channel.declare_exchange(
        env["AMQP_EVENTS_EXCHANGE"], aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.get_queue(env["AMQP_JOBS_QUEUE"], ensure=True)
    async with httpx.AsyncClient(
        base_url=env["TAVUS_BASE_URL"], headers={"x-api-key": env["TAVUS_API_KEY"]}, timeout=10
    ) as http:
        replica = env["TAVUS_DEFAULT_REPLICA_ID"]
        (await http.get(f"/replicas/{replica}")).raise_for_status()  # the worker caches it too
        guarantees = env.get("BASELINE_GUARANTEES") == "1"
        baseline = Baseline(
            http,
            channel,
            events,
            replica,
            env.get("WORKER_SESSION_NAME_PREFIX", "aw-"),
            guarantees=guarantees,
            jobs_queue=env["AMQP_JOBS_QUEUE"],
            bookkeeping=await connection.channel(publisher_confirms=True) if guarantees else None,
            connection=connection,
        )
        await queue.consume(baseline.on_message)
        print('{"event": "intake.consuming"}', file=sys.stderr, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
