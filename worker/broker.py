"""RabbitMQ plumbing: the connection, the contract's topology and confirmed publishing.

Session claims live in `worker.core.claims`, session records in `worker.core.records`; deciding what happens
to a delivery (ack, retry, dead-letter) is `worker.core.intake`'s job.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pydantic import BaseModel

from worker.amqp_connection import connect_any
from worker.amqp_nodes import display_url
from worker.settings import Settings

log = structlog.get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0


class BrokerError(Exception):
    """Something the broker said or did not say; the message is one readable line.

    BrokerError
    ├── BrokerUnavailable   the connection or channel is gone, or no answer in time: try again
    ├── ResourceLocked      an exclusive queue another connection holds (a claim taken)
    ├── ResourceMissing     a passive declare found no such queue
    └── ResourceMismatch    a queue exists with other arguments (PRECONDITION_FAILED)

    `broker_errors` is the one boundary where aio-pika's and aiormq's exceptions become these:
    the rest of the worker catches these types only.
    """


class BrokerUnavailable(BrokerError):
    """RabbitMQ cannot be reached right now; the message names the URL (password hidden) or the
    operation, and what failed."""


class ResourceLocked(BrokerError):
    """An exclusive queue is held by another connection."""


class ResourceMissing(BrokerError):
    """The queue does not exist."""


class ResourceMismatch(BrokerError):
    """The queue exists with other arguments than the ones declared."""


@contextlib.contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Translate what aio-pika/aiormq raise inside the block into `BrokerError`s, `from` the
    original. aiormq reports a channel or connection that is gone as RuntimeError("... closed")."""
    try:
        yield
    except aiormq.exceptions.ChannelLockedResource as exc:
        raise ResourceLocked(f"{what}: held by another connection") from exc
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise ResourceMissing(f"{what}: not found") from exc
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ResourceMismatch(f"{what}: {_reply_text(exc)}") from exc
    except (
        aiormq.exceptions.AMQPError,
        aio_pika.exceptions.ChannelInvalidStateError,
        ConnectionError,
        TimeoutError,
        RuntimeError,
    ) as exc:
        raise BrokerUnavailable(f"{what}: {type(exc).__name__} {_reply_text(exc)}".strip()) from exc


def _reply_text(exc: BaseException) -> str:
    return str(exc)[:160]


@dataclass(frozen=True)
class Topology:
    """Exchange and queue names (the contract's defaults, each configurable)."""

    jobs_exchange: str = "avatar.jobs"
    jobs_routing_key: str = "session.start"
    jobs_queue: str = "avatar.sessions"
    events_exchange: str = "avatar.events"
    control_exchange: str = "avatar.control"
    dead_letter_queue: str = "avatar.sessions.dead"

    @classmethod
    def from_settings(cls, s: Settings) -> Topology:
        return cls(
            s.amqp_jobs_exchange,
            s.amqp_jobs_routing_key,
            s.amqp_jobs_queue,
            s.amqp_events_exchange,
            s.amqp_control_exchange,
            s.amqp_dead_letter_queue,
        )

    def retry_queue(self, delay_s: float) -> str:
        return f"{self.jobs_queue}.retry.{round(delay_s * 1000)}ms"

    def claim_queue(self, session_id: str) -> str:
        return f"{self.jobs_queue}.live.{session_id}"

    def control_queue(self, worker_id: str) -> str:
        # A random suffix: two workers given the same WORKER_ID must not lock each other out.
        return f"{self.control_exchange}.{worker_id}.{uuid.uuid4().hex[:6]}"

    def record_queue(self, session_id: str) -> str:
        return f"{self.jobs_queue}.record.{session_id}"

    @property
    def lost_queue(self) -> str:
        """Where a session record lands when its lease runs out (the reapers consume it)."""
        return f"{self.jobs_queue}.lost"

    def persona_lock_queue(self, definition_key: str) -> str:
        """Held (exclusive) by the one worker finding or creating a persona definition."""
        return f"{self.jobs_queue}.persona.{definition_key}"

    def is_own_queue(self, name: str) -> bool:
        """True for a queue the worker itself uses (the job, dead-letter, retry, claim, record,
        lost, persona lock and control queues): no producer's reply_to may name one."""
        return name in (self.jobs_queue, self.dead_letter_queue) or name.startswith(
            (f"{self.jobs_queue}.", f"{self.dead_letter_queue}.", f"{self.control_exchange}.")
        )


JOB_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": 20}

# Every queue the guarantees rest on is a quorum queue: it survives the loss of any one node of
# three. A fixed group size keeps the broker's work per queue the same however many nodes the
# cluster has (RabbitMQ's default would place a replica on every node).
REPLICAS = 3
QUORUM: dict[str, Any] = {"x-queue-type": "quorum", "x-quorum-initial-group-size": REPLICAS}


def dead_lettering_to(exchange: str, routing_key: str) -> dict[str, Any]:
    """Arguments that hand a quorum queue's expired messages on, at least once: the broker keeps a
    message until the target queue has confirmed it (at-most-once, the default, drops it when the
    target's leader is being re-elected after a node loss)."""
    return {
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once
    }


async def declare_replicated_queue(
    channel: AbstractChannel, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    """Declare a durable quorum queue. A queue of that name left as a classic queue by an older
    worker is used as it is, with a warning that it lives on one node (a queue's type cannot
    change in place: an operator deletes it once it is empty)."""
    try:
        with broker_errors(f"declare queue {name}"):
            return await channel.declare_queue(name, durable=True, arguments=arguments)
    except ResourceMismatch as exc:
        log.warning("broker.queue_not_replicated", queue=name, error=str(exc))
        with broker_errors(f"declare queue {name}"):
            await channel.reopen()
            return await channel.declare_queue(name, passive=True)


async def declare_job_topology(channel: AbstractChannel, topo: Topology) -> AbstractQueue:
    """Declare the jobs exchange, the quorum job queue, the dead-letter queue and the lost queue
    (idempotent)."""
    with broker_errors("declare the job topology"):
        jobs = await channel.declare_exchange(
            topo.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
    await declare_replicated_queue(channel, topo.dead_letter_queue, QUORUM)
    await declare_replicated_queue(channel, topo.lost_queue, QUORUM)
    with broker_errors("declare the job topology"):
        queue = await channel.declare_queue(
            topo.jobs_queue,
            durable=True,
            arguments={
                **JOB_QUEUE_ARGUMENTS,
                # Poison messages past the delivery limit land in the dead-letter queue too.
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": topo.dead_letter_queue,
            },
        )
        await queue.bind(jobs, topo.jobs_routing_key)
    return queue


async def declare_retry_queues(
    channel: AbstractChannel, topo: Topology, delays_s: list[float]
) -> None:
    """One delay queue per backoff step: messages wait out its TTL, then return to the jobs exchange."""
    for delay in sorted(set(delays_s)):
        await declare_replicated_queue(
            channel,
            topo.retry_queue(delay),
            {
                **QUORUM,
                "x-message-ttl": round(delay * 1000),
                **dead_lettering_to(topo.jobs_exchange, topo.jobs_routing_key),
            },
        )


def json_message(
    payload: BaseModel | dict[str, Any] | bytes,
    *,
    headers: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    reply_to: str | None = None,
    message_type: str | None = None,
    message_id: str | None = None,
    persistent: bool = True,
) -> aio_pika.Message:
    """A JSON AMQP message with the contract's properties."""
    if isinstance(payload, BaseModel):
        body = payload.model_dump_json(exclude_none=False).encode()
    elif isinstance(payload, bytes):
        body = payload
    else:
        body = json.dumps(payload, separators=(",", ":")).encode()
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        headers=headers or {},
        correlation_id=correlation_id,
        reply_to=reply_to,
        type=message_type,
        message_id=message_id or uuid.uuid4().hex,
        app_id="avatar-worker",
    )


class Broker:
    """One robust connection and a confirmed publishing channel."""

    def __init__(self, url: str, topo: Topology) -> None:
        self._url = url
        self.topo = topo
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self.events_exchange: AbstractExchange | None = None
        self.jobs_exchange: AbstractExchange | None = None

    async def connect(self, *, timeout_s: float = 15.0) -> None:
        """Connect (failing fast if the broker is unreachable) and declare the topology.

        Raises BrokerUnavailable with one readable line when RabbitMQ cannot be reached.
        """
        try:
            self.connection = await connect_any(self._url, timeout_s=timeout_s)
        except (aiormq.exceptions.AMQPConnectionError, OSError, TimeoutError) as exc:
            detail = str(exc).replace(self._url, display_url(self._url))[:400] or "no answer"
            raise BrokerUnavailable(
                f"cannot reach RabbitMQ at {display_url(self._url)} ({type(exc).__name__}: "
                f"{detail}); start it or check AMQP_URL"
            ) from None
        with broker_errors("open the publishing channel"):
            self._publish_channel = await self.connection.channel(publisher_confirms=True)
        await declare_job_topology(self._publish_channel, self.topo)
        with broker_errors("declare the exchanges"):
            self.jobs_exchange = await self._publish_channel.get_exchange(self.topo.jobs_exchange)
            self.events_exchange = await self._publish_channel.declare_exchange(
                self.topo.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            await self._publish_channel.declare_exchange(
                self.topo.control_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )

    @property
    def is_connected(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    async def channel(self, *, prefetch: int | None = None) -> AbstractChannel:
        """A new channel on the shared connection (for consumers)."""
        assert self.connection is not None, "connect() first"
        with broker_errors("open a channel"):
            channel = await self.connection.channel(publisher_confirms=True)
            if prefetch is not None:
                await channel.set_qos(prefetch_count=prefetch)
        return channel

    @contextlib.asynccontextmanager
    async def brief_channel(self, what: str) -> AsyncIterator[AbstractRobustChannel]:
        """A channel for one look (a passive declare that may close it), closed afterwards; the
        block's broker errors come out as `BrokerError`s."""
        assert self.connection is not None, "connect() first"
        with broker_errors(what):
            channel = await self.connection.channel(publisher_confirms=False)
        try:
            with broker_errors(what):
                yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(BrokerError), broker_errors(what):
                    await channel.close()

    @property
    def publish_channel(self) -> AbstractRobustChannel:
        assert self._publish_channel is not None, "connect() first"
        return self._publish_channel

    async def publish(
        self,
        message: aio_pika.Message,
        *,
        routing_key: str,
        exchange: AbstractExchange | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm (default exchange when none is given).

        Not `mandatory`: an event nobody subscribed to is simply dropped. (aio-pika's default,
        mandatory, makes the broker return it, and aio-pika then logs the whole body — a user's
        meeting token among it — at WARNING.)
        """
        target = exchange or self.publish_channel.default_exchange
        with broker_errors(f"publish to {routing_key}"):
            await target.publish(
                message, routing_key=routing_key, mandatory=False, timeout=PUBLISH_TIMEOUT_S
            )

    async def aclose(self) -> None:
        """Close the connection (idempotent); every claim queue goes with it."""
        if self.connection is not None and not self.connection.is_closed:
            with contextlib.suppress(BrokerError), broker_errors("close the connection"):
                await self.connection.close()
