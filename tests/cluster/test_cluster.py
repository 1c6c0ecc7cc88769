"""The test cluster itself (scripts/cluster.sh through the `cluster` fixture): a node lost for good
and replaced by an empty one leaves a whole cluster behind, quorum queues included."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import aio_pika

from tests.cluster.conftest import Cluster

QUORUM = {"x-queue-type": "quorum"}


async def test_a_replaced_node_serves_the_quorum_queues_declared_before(cluster: Cluster) -> None:
    """After node 2 is replaced by an empty node, a message queued before is read through the
    new node, and the queue still has a majority when another node is then killed."""
    name = f"cluster-test.{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(cluster.url(0)) as writer:
        channel = await writer.channel()
        await channel.declare_queue(name, durable=True, arguments=QUORUM)
        await channel.default_exchange.publish(aio_pika.Message(b"kept"), routing_key=name)

    await cluster.recreate(1)
    await cluster.kill(2)
    async with await aio_pika.connect(cluster.url(1)) as reader:
        channel = await reader.channel()
        queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
        message = await queue.get(timeout=30)
        await message.ack()
        assert message.body == b"kept"
        await cluster.heal()  # deleting a quorum queue waits for its members (see the conftest)
        await queue.delete(if_unused=False, if_empty=False)


async def test_rabbitmqctl_reaches_each_node(cluster: Cluster) -> None:
    """`cluster.rabbitmqctl(i, ...)` talks to node i: each node names itself and sees the
    cluster's three nodes running."""
    for i in range(3):
        name = (await cluster.rabbitmqctl(i, "eval", "node().")).strip().strip("'")
        assert name == f"avatar-{urlsplit(cluster.url(i)).port}@localhost"
        status = json.loads(await cluster.rabbitmqctl(i, "cluster_status", "--formatter", "json"))
        assert len(status["running_nodes"]) == 3
