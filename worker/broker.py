"""RabbitMQ plumbing: the connection, the contract's topology and confirmed publishing.

Session claims live in `worker.claims`, session records in `worker.records`; deciding what happens
to a delivery (ack, retry, dead-letter) is `worker.intake`'s job.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pydantic import BaseModel

from worker.settings import Settings

PUBLISH_TIMEOUT_S = 10.0


class BrokerUnavailable(Exception):
    """RabbitMQ cannot be reached; the message names the URL (password hidden) and what failed."""


# What a broker call can raise when the connection or channel is gone; callers that can live
# without the call (cleanup, best-effort notes) catch exactly these and log them.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    BrokerUnavailable,
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    asyncio.TimeoutError,
)
# ... plus aiormq's RuntimeError("... closed") from a channel or connection that is gone.
CHANNEL_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, *BROKER_ERRORS)


def display_url(url: str) -> str:
    """The AMQP URL with its password replaced by ***."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


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


JOB_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": 20}


async def declare_job_topology(channel: AbstractChannel, topo: Topology) -> AbstractQueue:
    """Declare the jobs exchange, the quorum job queue and the dead-letter queue (idempotent)."""
    jobs = await channel.declare_exchange(
        topo.jobs_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    await channel.declare_queue(topo.dead_letter_queue, durable=True)
    await channel.declare_queue(topo.lost_queue, durable=True)
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
        await channel.declare_queue(
            topo.retry_queue(delay),
            durable=True,
            arguments={
                "x-message-ttl": round(delay * 1000),
                "x-dead-letter-exchange": topo.jobs_exchange,
                "x-dead-letter-routing-key": topo.jobs_routing_key,
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
            self.connection = await asyncio.wait_for(aio_pika.connect_robust(self._url), timeout_s)
        except (aiormq.exceptions.AMQPConnectionError, OSError, TimeoutError) as exc:
            detail = str(exc).replace(self._url, display_url(self._url))[:160] or "no answer"
            raise BrokerUnavailable(
                f"cannot reach RabbitMQ at {display_url(self._url)} ({type(exc).__name__}: "
                f"{detail}); start it or check AMQP_URL"
            ) from None
        self._publish_channel = await self.connection.channel(publisher_confirms=True)
        await declare_job_topology(self._publish_channel, self.topo)
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
        channel = await self.connection.channel(publisher_confirms=True)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

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
        await target.publish(
            message, routing_key=routing_key, mandatory=False, timeout=PUBLISH_TIMEOUT_S
        )

    async def aclose(self) -> None:
        """Close the connection (idempotent); every claim queue goes with it."""
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()
