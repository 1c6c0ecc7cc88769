"""What the worker's per-session broker bookkeeping costs RabbitMQ, op by op: the claim (an
exclusive queue), the session record (a quorum queue declared as worker/core/records.py declares
it; its first write, its replacement, its finish, its deletion), the old design's classic record
queue for comparison, and a confirmed event publish.

    .venv/bin/python bench/broker_ops.py [--n 300]            # the broker at AMQP_URL
    .venv/bin/python bench/broker_ops.py --cluster [--n 300]  # one node, then the local cluster

Prints wall ms per op (sequential, one channel) and the broker's CPU ms per op (every local node's
beam.smp, read from /proc; it includes whatever else uses the broker at the time, so run it on a
quiet broker or read it as an upper bound). `--cluster` measures the same ops on the single node
at AMQP_URL and on the 3-node cluster of `scripts/cluster.sh urls` (connected to node 1), one
after the other, and sums them into a per-session cost for each.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aio_pika
import benchlib
from benchlib import broker_cpu_s, connect, sweep_leftovers

from worker.broker import QUORUM, dead_lettering_to
from worker.core.records import LOOKS_ALLOWED, RECORD_EXPIRES_S

# The ops one phoenix_rest session costs the broker with the record design, in order: on the
# start path (claim, record opened, first record, `accepted`), after `ready` (the record naming the
# conversation), at the end (outcome record, `ended`, finish, claim released), and the record
# queue's deletion when it expires.
START_PATH = ("claim", "declare", "publish", "event")
WHOLE_SESSION = (
    *START_PATH,
    "replace",
    "event",
    "replace",
    "event",
    "finish",
    "unclaim",
    "delete",
)


@dataclass
class Prices:
    """Wall and broker CPU ms per op, by op."""

    wall_ms: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def total(self, ops: tuple[str, ...]) -> tuple[float, float]:
        return sum(self.wall_ms[o] for o in ops), sum(self.cpu_ms[o] for o in ops)


async def measure(
    prices: Prices, key: str, label: str, n: int, op: Callable[[int], Awaitable[object]], url: str
) -> None:
    cpu0, t0 = broker_cpu_s(url), time.perf_counter()
    for i in range(n):
        await op(i)
    wall = (time.perf_counter() - t0) / n * 1000
    cpu = (broker_cpu_s(url) - cpu0) / n * 1000
    prices.wall_ms[key], prices.cpu_ms[key] = wall, cpu
    print(f"  {label:<62} {wall:6.2f} ms wall  {cpu:6.2f} ms broker CPU", flush=True)


def record_arguments(prefix: str) -> dict[str, object]:
    """As worker.core.records.SessionRecords.arguments()."""
    return {
        **QUORUM,
        "x-expires": RECORD_EXPIRES_S * 1000,
        "x-delivery-limit": LOOKS_ALLOWED,
        **dead_lettering_to("", f"{prefix}.lost"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument(
        "--cluster", action="store_true", help="one node, then the local 3-node cluster"
    )
    args = parser.parse_args()
    single = benchlib.AMQP_URL.split(",")[0]
    brokers = [("one node", single)]
    if args.cluster:
        brokers.append(("3-node cluster", benchlib.cluster_urls()))
    priced = []
    for label, url in brokers:
        print(f"\n{label}: {len(url.split(','))} node(s), {args.n} of each op, sequential")
        priced.append((label, await price(url, args.n, with_memory=label == "one node")))
    print("\nper session (sum of the ops above):")
    for label, prices in priced:
        start = prices.total(START_PATH)
        whole = prices.total(WHOLE_SESSION)
        print(
            f"  {label:<16} start path {start[0]:5.1f} ms wall, {start[1]:5.1f} ms broker CPU;"
            f" whole session {whole[0]:5.1f} ms wall, {whole[1]:5.1f} ms broker CPU"
        )


async def price(url: str, n: int, *, with_memory: bool) -> Prices:
    run = uuid.uuid4().hex[:6]
    connection = await connect(url)
    try:
        return await run_ops(connection, url, run, n, with_memory=with_memory)
    finally:
        if "," not in url:  # the sweep lists the single node's queues
            await sweep_leftovers(connection, f"bops{run}.")  # also after a failed op
        await connection.close()


async def run_ops(  # noqa: C901 (one small closure per op)
    connection: aio_pika.abc.AbstractRobustConnection,
    url: str,
    run: str,
    n: int,
    *,
    with_memory: bool,
) -> Prices:
    prices = Prices()
    confirmed = await connection.channel(publisher_confirms=True)
    plain = await connection.channel(publisher_confirms=False)
    events = await confirmed.declare_exchange(f"bops{run}.events", "topic", auto_delete=True)
    body = b'{"session_id": "x", "status": "ready"}' * 8
    prefix = f"bops{run}"
    await confirmed.declare_queue(f"{prefix}.lost", durable=True, arguments=QUORUM)

    async def publish_event(i: int) -> None:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await events.publish(message, routing_key="session.ready")

    async def claim(i: int) -> None:
        await plain.declare_queue(f"{prefix}.live.{i}", exclusive=True, auto_delete=False)

    async def unclaim(i: int) -> None:
        await plain.queue_delete(f"{prefix}.live.{i}")

    records: dict[int, aio_pika.abc.AbstractQueue] = {}

    async def declare_record(i: int) -> None:
        name = f"{prefix}.record.{i}"
        records[i] = await confirmed.declare_queue(
            name, durable=True, arguments=record_arguments(prefix)
        )

    async def publish_record(i: int) -> None:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        message.expiration = 60
        await confirmed.default_exchange.publish(message, routing_key=f"{prefix}.record.{i}")

    async def replace_record(i: int) -> None:
        """As the worker's `_replace`: the new record, then the one ahead taken off and the new
        one given back."""
        await publish_record(i)
        ahead = await records[i].get(no_ack=False, fail=False)
        if ahead is not None:
            await ahead.ack()
        ours = await records[i].get(no_ack=False, fail=False)
        if ours is not None:
            await ours.nack(requeue=True)

    async def look_record(i: int) -> None:
        message = await records[i].get(no_ack=False, fail=False)
        if message is not None:
            await message.nack(requeue=True)

    async def finish_record(i: int) -> None:
        await records[i].purge()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await confirmed.default_exchange.publish(message, routing_key=f"{prefix}.record.{i}")

    async def delete_record(i: int) -> None:
        await confirmed.queue_delete(f"{prefix}.record.{i}")

    async def declare_classic(i: int) -> None:
        await confirmed.declare_queue(
            f"{prefix}.classic.{i}", durable=True, arguments={"x-expires": 5_400_000}
        )

    async def publish_classic(i: int) -> None:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await confirmed.default_exchange.publish(message, routing_key=f"{prefix}.classic.{i}")

    async def delete_classic(i: int) -> None:
        await confirmed.queue_delete(f"{prefix}.classic.{i}")

    ops: tuple[tuple[str, str, Callable[[int], Awaitable[None]]], ...] = (
        ("event", "confirmed persistent publish to a topic exchange (event)", publish_event),
        ("claim", "claim: declare exclusive queue", claim),
        ("declare", "record: declare quorum queue (the worker's arguments)", declare_record),
        ("publish", "record: confirmed persistent publish (leased)", publish_record),
        ("look", "record: get + nack requeue (a look)", look_record),
        ("replace", "record: replace (publish, get + ack, get + nack requeue)", replace_record),
        ("finish", "record: finish (purge, confirmed publish)", finish_record),
        ("delete", "record: delete quorum queue (as at expiry)", delete_record),
        ("unclaim", "claim: delete queue", unclaim),
        (
            "classic_declare",
            "old design: declare classic durable queue (x-expires)",
            declare_classic,
        ),
        ("classic_publish", "old design: confirmed persistent publish to it", publish_classic),
        ("classic_delete", "old design: delete it", delete_classic),
    )
    for key, label, op in ops:
        await measure(prices, key, label, n, op, url)
    await confirmed.queue_delete(f"{prefix}.lost")
    if with_memory and shutil.which("rabbitmqctl") and not math.isnan(broker_cpu_s(url)):
        await retained_records(confirmed, run, n, body)
    return prices


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
