"""Checks the broker behaviour a one-queue-per-session design would rest on (see the analysis in
docs/benchmarks.md): the session's record queue doubles as its claim when its owner consumes it
with an exclusive consumer and holds its leased note unacked.

    .venv/bin/python bench/held_note.py

Prints, against the RabbitMQ at AMQP_URL: whether a held note outlives its TTL, whether a second
exclusive consumer is refused, what a passive declare reports, and how soon the note reaches the
`lost` queue once its owner's connection dies. Exits non-zero if any of them does not hold.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import aio_pika
import aiormq
from benchlib import AMQP_URL

from worker.amqp_nodes import AmqpNodes

NODE_URL = AmqpNodes.parse(AMQP_URL)[0].url  # one node: the checks are about one connection's death


async def main() -> int:
    run = uuid.uuid4().hex[:6]
    lost, record = f"held{run}.lost", f"held{run}.record"
    admin = await aio_pika.connect(NODE_URL)
    other = await aio_pika.connect(NODE_URL)
    owner = await aio_pika.connect(NODE_URL)
    failures = []
    try:
        admin_channel = await admin.channel()
        await admin_channel.declare_queue(lost, durable=True)
        channel = await owner.channel()
        await channel.set_qos(prefetch_count=1)
        queue = await channel.declare_queue(
            record,
            durable=True,
            arguments={
                "x-expires": 600_000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": lost,
            },
        )
        held: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            held.append(message)  # never acked: the owner holds it

        await queue.consume(hold, exclusive=True)
        note = aio_pika.Message(b'{"session_id": "x"}', delivery_mode=2, expiration=1)
        await channel.default_exchange.publish(note, routing_key=record)
        await asyncio.sleep(2.5)  # the note's TTL (1 s) runs out while it is held
        in_lost = (await admin_channel.declare_queue(lost, passive=True)).declaration_result
        print(f"note held past its 1 s TTL: held={len(held)}, in lost={in_lost.message_count}")
        if len(held) != 1 or in_lost.message_count:
            failures.append("a held note expired")

        probe = await other.channel()
        try:
            second = await probe.get_queue(record, ensure=False)
            await second.consume(hold, exclusive=True)
            failures.append("a second exclusive consumer was allowed")
            print("second exclusive consumer: ALLOWED")
        except aiormq.exceptions.ChannelAccessRefused:
            print("second exclusive consumer: refused (ACCESS_REFUSED)")
        passive = await (await other.channel()).declare_queue(record, passive=True)
        print(f"passive declare: {passive.declaration_result.consumer_count} consumer(s)")
        if passive.declaration_result.consumer_count != 1:
            failures.append("a passive declare did not report the owner")

        started = time.perf_counter()
        await owner.close()  # the owner dies
        count = 0
        while time.perf_counter() - started < 5 and not count:
            check = await admin_channel.declare_queue(lost, passive=True)
            count = check.declaration_result.message_count
            await asyncio.sleep(0.01)
        waited_ms = (time.perf_counter() - started) * 1000
        print(f"owner's connection closed: note in lost after {waited_ms:.0f} ms ({count})")
        if not count:
            failures.append("the note never reached the lost queue")
        await admin_channel.queue_delete(record)
        await admin_channel.queue_delete(lost)
    finally:
        for connection in (owner, other, admin):
            if not connection.is_closed:
                await connection.close()
    for failure in failures:
        print(f"DOES NOT HOLD: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
