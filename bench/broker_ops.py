"""What the worker's per-session broker bookkeeping costs RabbitMQ, op by op: the claim (an
exclusive queue), the session record (a durable queue with x-expires, purge, a persistent
publish), their deletion, and a confirmed event publish for comparison.

    .venv/bin/python bench/broker_ops.py [--n 300]

Prints wall ms per op (sequential, one channel) and the broker's CPU ms per op (beam.smp, read
from /proc; it includes whatever else uses the broker at the time, so run it on a quiet broker or
read it as an upper bound).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
from benchlib import AMQP_URL, broker_pid, cpu_s, sweep_leftovers


async def measure(
    label: str, n: int, op: Callable[[int], Awaitable[object]], pid: int | None
) -> None:
    cpu0, t0 = cpu_s(pid) if pid else float("nan"), time.perf_counter()
    for i in range(n):
        await op(i)
    wall = (time.perf_counter() - t0) / n * 1000
    cpu = ((cpu_s(pid) if pid else float("nan")) - cpu0) / n * 1000
    print(f"  {label:<58} {wall:6.2f} ms wall  {cpu:6.2f} ms broker CPU")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    n = parser.parse_args().n
    run = uuid.uuid4().hex[:6]
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        await run_ops(connection, run, n)
    finally:
        await sweep_leftovers(connection, f"bops{run}.")  # also after a failed op
        await connection.close()


async def run_ops(connection: aio_pika.abc.AbstractRobustConnection, run: str, n: int) -> None:
    pid = broker_pid()
    confirmed = await connection.channel(publisher_confirms=True)
    plain = await connection.channel(publisher_confirms=False)
    events = await confirmed.declare_exchange(f"bops{run}.events", "topic", auto_delete=True)
    body = b'{"session_id": "x", "status": "ready"}' * 8

    async def publish_event(i: int) -> None:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await events.publish(message, routing_key="session.ready")

    async def claim(i: int) -> None:
        await plain.declare_queue(f"bops{run}.live.{i}", exclusive=True, auto_delete=False)

    async def unclaim(i: int) -> None:
        await plain.queue_delete(f"bops{run}.live.{i}")

    records: dict[int, aio_pika.abc.AbstractQueue] = {}

    async def declare_record(i: int) -> None:
        name = f"bops{run}.record.{i}"
        arguments = {"x-expires": 5_400_000}
        records[i] = await confirmed.declare_queue(name, durable=True, arguments=arguments)

    async def purge_record(i: int) -> None:
        await records[i].purge()

    async def publish_record(i: int) -> None:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await confirmed.default_exchange.publish(message, routing_key=f"bops{run}.record.{i}")

    async def delete_record(i: int) -> None:
        await confirmed.queue_delete(f"bops{run}.record.{i}")

    print(f"broker ops, {n} each, sequential on one channel")
    await measure("confirmed persistent publish to a topic exchange (event)", n, publish_event, pid)
    await measure("claim: declare exclusive queue", n, claim, pid)
    await measure("record: declare durable queue (x-expires)", n, declare_record, pid)
    await measure("record: purge", n, purge_record, pid)
    await measure("record: confirmed persistent publish", n, publish_record, pid)
    await measure("record: delete queue", n, delete_record, pid)
    await measure("claim: delete queue", n, unclaim, pid)
    if shutil.which("rabbitmqctl"):
        await retained_records(confirmed, run, n, body)


async def retained_records(
    channel: aio_pika.abc.AbstractChannel, run: str, n: int, body: bytes
) -> None:
    """Broker memory held by finished sessions' records (a durable queue with one message each),
    from `rabbitmqctl list_queues name memory` (the queues' own processes)."""
    for i in range(n):
        name = f"bops{run}.kept.{i}"
        await channel.declare_queue(name, durable=True, arguments={"x-expires": 5_400_000})
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=name)
    lister = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "memory",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(lister.communicate(), 60)
    sizes = [int(line.split()[1]) for line in out.decode().splitlines()
             if line.startswith(f"bops{run}.kept.")]  # fmt: skip
    if sizes:
        print(
            f"  retained record queue (1 message), queue process memory: "
            f"{sum(sizes) / len(sizes) / 1024:.0f} KB each ({len(sizes)} queues)"
        )
    for i in range(n):
        await channel.queue_delete(f"bops{run}.kept.{i}")


if __name__ == "__main__":
    asyncio.run(main())
