"""`connect_any` on a real 3-node cluster: the first node that answers, and another node when its
node dies, with consumers on quorum queues carrying on there; and quorum queues themselves
outliving a node."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelInvalidStateError

from tests.cluster.conftest import Cluster
from tests.cluster.proxy import NodeProxy
from worker.amqp_connection import MultiNodeConnection, connect_any
from worker.amqp_nodes import AmqpNodes

QUORUM = {"x-queue-type": "quorum"}
WAIT_S = 60.0


def refused_url() -> str:
    """An AMQP URL on a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
async def opened() -> AsyncIterator[list[aio_pika.abc.AbstractConnection]]:
    """Connections a test opens, closed after it."""
    connections: list[aio_pika.abc.AbstractConnection] = []
    yield connections
    for connection in connections:
        await connection.close()


async def round_trip(connection: aio_pika.abc.AbstractConnection) -> bytes:
    """Publish one message to a server-named queue and read it back through `connection`."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=queue.name)
    message = await queue.get(timeout=10)
    await message.ack()
    await channel.close()
    return message.body


async def consume_quorum(connection: MultiNodeConnection) -> tuple[str, asyncio.Queue[bytes]]:
    """A new quorum queue consumed (robustly) through `connection`: its name and what arrives."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        received.put_nowait(message.body)

    name = f"cluster-test.{uuid.uuid4().hex[:8]}"
    channel = await connection.channel()
    queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    await queue.consume(on_message)
    return name, received


async def publisher_on(
    url: str, opened: list[aio_pika.abc.AbstractConnection]
) -> aio_pika.abc.AbstractChannel:
    """A confirming channel on the node of `url` (its connection closed after the test)."""
    connection = await aio_pika.connect(url)
    opened.append(connection)
    return await connection.channel()


async def wait_moved(connection: MultiNodeConnection, away_from: int) -> None:
    """Until the connection is open again on a node other than the one on port `away_from`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while connection.node.port == away_from or not connection.connected.is_set():
        assert loop.time() < deadline, f"still not reconnected elsewhere after {WAIT_S} s"
        await asyncio.sleep(0.1)


async def test_connects_to_the_second_node_when_the_first_refuses(
    cluster: Cluster, opened: list[aio_pika.abc.AbstractConnection]
) -> None:
    """With AMQP_URL's first node refusing connections, the connection opens on the second."""
    nodes = AmqpNodes.parse(f"{refused_url()},{cluster.url(1)}")
    connection = await connect_any(nodes, timeout_s=10)
    opened.append(connection)
    assert connection.node == nodes[1]
    assert await round_trip(connection) == b"hello"


async def test_connects_to_the_second_node_when_the_first_does_not_answer(
    cluster: Cluster, opened: list[aio_pika.abc.AbstractConnection]
) -> None:
    """A first node cut off by the network (no answer at all) costs its share of the timeout,
    then the connection opens on the second."""
    proxy = await NodeProxy.to(cluster.url(0))
    proxy.cut()
    try:
        nodes = AmqpNodes.parse(f"{proxy.url_for(cluster.url(0))},{cluster.url(1)}")
        connection = await connect_any(nodes, timeout_s=4)
        opened.append(connection)
        assert connection.node == nodes[1]
        assert await round_trip(connection) == b"hello"
    finally:
        await proxy.aclose()


async def test_a_quorum_consumer_keeps_receiving_after_its_node_is_killed(
    cluster: Cluster, opened: list[aio_pika.abc.AbstractConnection]
) -> None:
    """Its node SIGKILLed, the connection moves to another node, where its consumer on a quorum
    queue gets the messages published after the kill."""
    connection = await connect_any(cluster.nodes(reconnect_interval=0.5), timeout_s=15)
    opened.append(connection)
    first = connection.node.port
    assert first == urlsplit(cluster.url(0)).port
    name, received = await consume_quorum(connection)
    out = await publisher_on(cluster.url(2), opened)
    await out.default_exchange.publish(aio_pika.Message(b"before"), routing_key=name)
    assert await asyncio.wait_for(received.get(), WAIT_S) == b"before"

    await cluster.kill(0)
    await wait_moved(connection, away_from=first)
    await out.default_exchange.publish(aio_pika.Message(b"after"), routing_key=name)
    assert await asyncio.wait_for(received.get(), WAIT_S) == b"after"
    await cluster.heal()  # deleting a quorum queue waits for its members (see the conftest)
    await out.queue_delete(name)


async def read_quorum_queue(
    url: str, name: str, count: int, opened: list[aio_pika.abc.AbstractConnection]
) -> list[bytes]:
    """Up to `count` messages taken (and acked) from quorum queue `name` through the node of
    `url` within WAIT_S, as a client must read one whose leader was just lost: while it has none,
    a basic.get may close the whole connection (RabbitMQ 4: 541 nodedown), and the client asks
    again on a new one. A message whose ack went down with its connection comes again: each body
    is counted once."""
    got: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while len(got) < count and loop.time() < deadline:
        try:
            reader = await aio_pika.connect(url)
            opened.append(reader)
            channel = await reader.channel()
            queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
            while len(got) < count and loop.time() < deadline:
                message = await queue.get(fail=False, timeout=10)
                if message is None:
                    await asyncio.sleep(0.2)  # a new leader is being elected
                    continue
                await message.ack()
                if message.body not in got:
                    got.append(message.body)
        except (aio_pika.exceptions.AMQPError, ChannelInvalidStateError):
            await asyncio.sleep(0.2)  # the connection went with the lost leader: a new one
    return got


async def test_a_quorum_queue_keeps_its_messages_when_a_node_is_killed(
    cluster: Cluster, opened: list[aio_pika.abc.AbstractConnection]
) -> None:
    """Messages confirmed into a quorum queue are all still readable through another node after
    the node that held its leader is SIGKILLed (by a reader that reconnects when the lost leader
    takes its connection down)."""
    name = f"cluster-test.{uuid.uuid4().hex[:8]}"
    bodies = [f"m{i}".encode() for i in range(10)]
    async with await aio_pika.connect(cluster.url(0)) as writer:
        channel = await writer.channel()
        await channel.declare_queue(name, durable=True, arguments=QUORUM)
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=name)

    await cluster.kill(0)
    got = await read_quorum_queue(cluster.url(1), name, len(bodies), opened)
    assert sorted(got) == bodies  # a message given back by a closed connection may come later
    await cluster.heal()  # deleting a quorum queue waits for its members (see the conftest)
    out = await publisher_on(cluster.url(1), opened)
    await out.queue_delete(name)


async def test_a_connection_cut_off_from_its_node_moves_to_another(
    cluster: Cluster, opened: list[aio_pika.abc.AbstractConnection]
) -> None:
    """Cut off from its node by the network (no close seen, heartbeats lost), the connection
    gives that node up and carries on on the next one, its quorum consumer with it."""
    proxy = await NodeProxy.to(cluster.url(0))
    try:
        through = AmqpNodes.parse(f"{proxy.url_for(cluster.url(0))},{cluster.url(1)}")
        nodes = through.with_query(heartbeat=1, reconnect_interval=0.5)
        connection = await connect_any(nodes, timeout_s=10)
        opened.append(connection)
        name, received = await consume_quorum(connection)
        out = await publisher_on(cluster.url(2), opened)

        proxy.cut()
        await wait_moved(connection, away_from=proxy.port)
        await out.default_exchange.publish(aio_pika.Message(b"after the cut"), routing_key=name)
        assert await asyncio.wait_for(received.get(), WAIT_S) == b"after the cut"
        await out.queue_delete(name)
    finally:
        await proxy.aclose()


async def test_a_restored_proxy_lets_a_waiting_connection_through(cluster: Cluster) -> None:
    """A connection attempt made while the proxy is cut waits, and completes once it is
    restored (the test helper behaves as a partition that heals)."""
    proxy = await NodeProxy.to(cluster.url(1))
    try:
        proxy.cut()
        attempt = asyncio.create_task(aio_pika.connect(proxy.url_for(cluster.url(1))))
        await asyncio.sleep(0.5)
        assert not attempt.done()
        proxy.restore()
        connection = await asyncio.wait_for(attempt, WAIT_S)
        assert await round_trip(connection) == b"hello"
        await connection.close()
    finally:
        await proxy.aclose()
