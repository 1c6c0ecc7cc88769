"""One robust AMQP connection to a broker of one or several nodes: it opens on the first node that
answers and, whenever its node goes away, reconnects to the nodes in turn, starting with the next
one. aio-pika re-opens the robust channels and re-declares their queues and consumers there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import structlog
from aio_pika import RobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from worker.amqp_nodes import AmqpNode, AmqpNodes, parse_nodes

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 15.0  # for the commands that connect once (enqueue, stop): all nodes' share


class NoNodeAnswered(aiormq.exceptions.AMQPConnectionError):
    """No node of AMQP_URL answered; the message names each node (password hidden) and why."""


class MultiNodeConnection(RobustConnection):
    """aio-pika's RobustConnection whose URL moves to the next node after each lost connection
    and each failed attempt, so its reconnect loop goes round the nodes. Its own parameters
    (reconnect_interval, fail_fast) come from the query of the node it first tried."""

    def __init__(self, nodes: AmqpNodes, *, first: int = 0, **kwargs: Any) -> None:
        self.nodes = nodes
        self._index = first % len(nodes)
        super().__init__(URL(nodes[self._index].url), **kwargs)

    @property
    def node(self) -> AmqpNode:
        """The node this connection is on (or tries next, while it reconnects)."""
        return self.nodes[self._index]

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # aio-pika calls this when an open connection ends and when an attempt fails: either
        # way, the reconnect loop's next attempt goes to the next node.
        await super()._on_connection_close(closing)
        if len(self.nodes) == 1 or self.close_called:
            return
        lost = self.node
        self._index = (self._index + 1) % len(self.nodes)
        self.url = URL(self.node.url)
        if self.connection_attempt:  # it had connected: a node went away, not a first try
            log.info("amqp.node_unavailable", node=lost.display, next_node=self.node.display)


async def connect_any(nodes: AmqpNodes | str, *, timeout_s: float) -> MultiNodeConnection:
    """A robust connection to the first node that answers, in AMQP_URL's order.

    `timeout_s` is shared out between the nodes; each later reconnect attempt gets the same
    share. One node: raises what aio-pika raises. Several: NoNodeAnswered names each node.
    """
    nodes = parse_nodes(nodes)
    attempt_timeout_s = timeout_s / len(nodes)
    failures: list[tuple[AmqpNode, BaseException]] = []
    for index, node in enumerate(nodes):
        connection = MultiNodeConnection(nodes, first=index)
        try:
            await connection.connect(timeout=attempt_timeout_s)
        except CONNECTION_EXCEPTIONS as exc:
            await connection.close()
            if len(nodes) == 1:
                raise
            failures.append((node, exc))
            continue
        except BaseException:  # cancelled (an outer timeout): leave no reconnect loop behind
            await connection.close()
            raise
        return connection
    raise NoNodeAnswered(_describe_failures(failures, nodes))


def _describe_failures(failures: list[tuple[AmqpNode, BaseException]], nodes: AmqpNodes) -> str:
    parts = []
    for node, exc in failures:
        detail = str(exc).replace(node.url, node.display)
        for password in nodes.passwords():
            detail = detail.replace(password, "***")
        detail = detail.split(" (", 1)[0][:80] or "no answer"  # "[Errno 111] Connect call failed"
        parts.append(f"{node.host}:{node.port} ({type(exc).__name__}: {detail})")
    return f"no node of {len(nodes)} answered: " + "; ".join(parts)
