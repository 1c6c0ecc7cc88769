"""The floor for intake throughput: a bare aio-pika consumer making the worker's phoenix_rest calls
(find-by-name lookup over active then ended conversations, create conversation) and publishing the
same accepted/ready events (events exchange + reply_to, publisher confirms), acking after ready.

No claim queue, no session record, no validation, no logging, no following: everything the worker
does beyond this is its price for correctness. Configured by environment (see `main`); prints
"intake.consuming" to stderr once it consumes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx

PAGE = 100
ENDED_PAGES = 10


class Baseline:
    def __init__(
        self,
        http: httpx.AsyncClient,
        channel: aio_pika.abc.AbstractChannel,
        events: aio_pika.abc.AbstractExchange,
        replica_id: str,
        prefix: str,
    ) -> None:
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
        found = await self.find(self.prefix + sid)
        if found is not None and found[1]:
            await message.ack()
            return
        await self.publish(message, {**common, "status": "accepted", "at": now()})
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
        await message.ack()


def now() -> str:
    return datetime.now(UTC).isoformat()


async def main() -> None:
    env = os.environ
    connection = await aio_pika.connect_robust(env["AMQP_URL"])
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
        baseline = Baseline(
            http, channel, events, replica, env.get("WORKER_SESSION_NAME_PREFIX", "aw-")
        )
        await queue.consume(baseline.on_message)
        print('{"event": "intake.consuming"}', file=sys.stderr, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
