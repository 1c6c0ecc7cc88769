"""RabbitMQ plumbing: the contract's topology, confirmed publishing, and cross-worker session claims.

A session is *claimed* by declaring an exclusive queue named after it: RabbitMQ lets one connection
hold it, and drops it when that connection dies, so any worker can tell a live session from an
orphan. Deciding what happens to a delivery (ack, retry, dead-letter) is `worker.intake`'s job.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
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

from worker.settings import Settings

log = structlog.get_logger("worker.broker")

PUBLISH_TIMEOUT_S = 10.0


class BrokerUnavailable(Exception):
    """RabbitMQ cannot be reached; the message names the URL (password hidden) and what failed."""


# Session records: one expiry for all (the longest session + 1 h), so every declaration matches;
# and a bound on concurrent record RPCs, so a burst of starts queues instead of timing out.
RECORD_EXPIRES_S = 14400 + 3600
BOOKKEEPING_CONCURRENCY = 32
# The lease of a note that carries a session's outcome (see `write_outcome`): it only runs out
# when the publisher died (or the broker is away) between the event and `finish_record`.
OUTCOME_LEASE_S = 10.0

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
    """One robust connection, a confirmed publishing channel, and the session-claim channel."""

    def __init__(self, url: str, topo: Topology) -> None:
        self._url = url
        self.topo = topo
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._claim_channel: AbstractRobustChannel | None = None
        self._records_channel: AbstractRobustChannel | None = None
        self._bookkeeping = asyncio.Semaphore(BOOKKEEPING_CONCURRENCY)
        self._claims: dict[str, AbstractQueue] = {}
        self._claim_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # Called with a session id whose claim another worker (or a reaper) took during an outage.
        self.on_claim_lost: Callable[[str], None] = lambda _session_id: None
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
        self.connection.reconnect_callbacks.add(self._on_reconnect)
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

    async def claim(self, session_id: str) -> bool:
        """Take the cluster-wide claim on a session; False when another connection holds it.

        Raises BrokerUnavailable while the connection is down (aiormq says RuntimeError).
        """
        try:
            return await self._claim(session_id)
        except RuntimeError as exc:
            raise BrokerUnavailable(f"the broker connection is down ({exc})") from exc

    async def _claim(self, session_id: str) -> bool:
        async with self._claim_lock:
            if session_id in self._claims:
                return True
            channel = await self._fresh_claim_channel()
            try:
                # robust=False: aio-pika must not re-declare claims by itself on reconnect (a
                # claim another worker took meanwhile would make every reconnect fail);
                # `_retake_claims` does it and reports the ones that are lost.
                queue = await channel.declare_queue(
                    self.topo.claim_queue(session_id),
                    exclusive=True,
                    auto_delete=False,
                    robust=False,
                )
            except aiormq.exceptions.ChannelLockedResource:
                self._claim_channel = None  # the server closed it
                return False
            except CHANNEL_ERRORS:
                self._claim_channel = None  # never reuse a channel an error may have closed
                raise
            self._claims[session_id] = queue
            return True

    async def release_claim(self, session_id: str) -> None:
        """Drop the claim (idempotent); the queue also disappears if this connection dies."""
        async with self._claim_lock:
            queue = self._claims.pop(session_id, None)
            if queue is None:
                return
            try:
                await queue.delete(if_unused=False, if_empty=False)
            except (
                aiormq.exceptions.AMQPError,
                aio_pika.exceptions.ChannelInvalidStateError,
            ) as exc:
                log.warning("broker.claim_release_failed", session_id=session_id, error=str(exc))
                self._claim_channel = None

    async def is_claimed_elsewhere(self, session_id: str) -> bool:
        """True when some live connection holds this session's claim."""
        if session_id in self._claims:
            return False
        assert self.connection is not None
        try:
            channel = await self.connection.channel()
        except RuntimeError as exc:
            raise BrokerUnavailable(f"the broker connection is down ({exc})") from exc
        try:
            await channel.declare_queue(
                self.topo.claim_queue(session_id), passive=True, robust=False
            )
            return True
        except (aiormq.exceptions.ChannelLockedResource, aiormq.exceptions.ChannelAccessRefused):
            return True
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            if not channel.is_closed:
                await channel.close()

    def _record_arguments(self) -> dict[str, Any]:
        return {
            "x-expires": RECORD_EXPIRES_S * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.topo.lost_queue,
        }

    async def _records(self) -> AbstractRobustChannel:
        """Records have their own channel: event confirms never wait behind their queue RPCs."""
        if self._records_channel is None or self._records_channel.is_closed:
            assert self.connection is not None, "connect() first"
            self._records_channel = await self.connection.channel(publisher_confirms=True)
        return self._records_channel

    async def open_record(self, session_id: str) -> dict[str, Any] | None:
        try:
            return await self._open_record(session_id)
        except CHANNEL_ERRORS as exc:
            self._records_channel = None  # never reuse a channel an error may have closed
            raise BrokerUnavailable(f"the broker connection is down ({exc})") from exc

    async def _open_record(self, session_id: str) -> dict[str, Any] | None:
        """Declare the session's record queue (so writing needs nothing more) and return the note
        already in it, if any: a finished session's, or an earlier attempt's.

        A session record is a dead man's switch: its note carries a lease (a message TTL) after
        which it is dead-lettered to the `lost` queue, where a reaper checks that the session's
        claim is still held (and re-arms the lease) or finishes the session from the note. The
        queue itself expires RECORD_EXPIRES_S after its last use, so nothing is left forever.
        """
        async with self._bookkeeping:
            channel = await self._records()
            queue = await channel.declare_queue(
                self.topo.record_queue(session_id),
                durable=True,
                arguments=self._record_arguments(),
                robust=False,
            )
            if not queue.declaration_result.message_count:
                return None
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                return None
            record: dict[str, Any] = json.loads(message.body)
            await message.nack(requeue=True)  # back in place, its lease untouched
            return record

    async def write_record(
        self, session_id: str, record: dict[str, Any], *, lease_s: float, replace: bool
    ) -> None:
        try:
            await self._write_record(session_id, record, lease_s=lease_s, replace=replace)
        except CHANNEL_ERRORS as exc:
            self._records_channel = None
            raise BrokerUnavailable(f"the broker connection is down ({exc})") from exc

    async def _write_record(
        self, session_id: str, record: dict[str, Any], *, lease_s: float, replace: bool
    ) -> None:
        """Put the session's note (with a lease) in its queue, opened by `open_record`;
        `replace` drops the note an earlier attempt left there first."""
        async with self._bookkeeping:
            channel = await self._records()
            name = self.topo.record_queue(session_id)
            if replace:
                await (await channel.get_queue(name, ensure=False)).purge()
            message = json_message(record)
            message.expiration = lease_s
            await channel.default_exchange.publish(
                message, routing_key=name, mandatory=False, timeout=PUBLISH_TIMEOUT_S
            )

    async def rearm_record(
        self, session_id: str, record: dict[str, Any], *, lease_s: float
    ) -> None:
        """Put a fresh lease on the session's note (its previous one has run out)."""
        await self.write_record(session_id, record, lease_s=lease_s, replace=False)

    async def read_record(self, session_id: str) -> dict[str, Any] | None:
        """The session's note, or None when there is none (it never got that far, or expired)."""
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(
                self.topo.record_queue(session_id), passive=True, robust=False
            )
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                return None
            record: dict[str, Any] = json.loads(message.body)
            await message.nack(requeue=True)  # back in place, its lease untouched
            return record
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        finally:
            if not channel.is_closed:
                await channel.close()

    async def write_outcome(
        self,
        session_id: str,
        record: dict[str, Any],
        *,
        lease_s: float,
        patience_s: float = 60.0,
    ) -> None:
        """Replace the session's note with one carrying its outcome (`record["outcome"]`: the
        terminal event, exactly as it is about to be published), under a lease of at most
        OUTCOME_LEASE_S. Written before the event goes out: if the publisher dies before
        `finish_record`, the reaper that gets the lapsed note republishes that same event (a copy
        consumers can dedupe), never another outcome. Waits out a broker outage like
        `finish_record`."""
        lease_s = min(lease_s, OUTCOME_LEASE_S)
        await self._patiently(
            lambda: self._write_record(session_id, record, lease_s=lease_s, replace=True),
            "write the session's outcome",
            patience_s,
        )

    async def finish_record(
        self, session_id: str, record: dict[str, Any], *, patience_s: float = 60.0
    ) -> None:
        """Mark the session's note finished, with no lease (the queue expires by itself later): a
        copy of the job that arrives meanwhile, on any worker, is known for a duplicate. Waits
        out a broker outage (up to `patience_s`): a note left unfinished would make a reaper
        publish its outcome again."""
        await self._patiently(
            lambda: self._finish_record(session_id, record),
            "finish the session record",
            patience_s,
        )

    async def _patiently(
        self, op: Callable[[], Awaitable[None]], what: str, patience_s: float
    ) -> None:
        """Run a record operation, again every second while the broker is away (up to
        `patience_s`); then BrokerUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        while True:
            try:
                await op()
                return
            except CHANNEL_ERRORS as exc:
                self._records_channel = None
                if loop.time() > deadline:
                    raise BrokerUnavailable(f"could not {what} ({exc})") from exc
                await asyncio.sleep(1.0)

    async def _finish_record(self, session_id: str, record: dict[str, Any]) -> None:
        async with self._bookkeeping:
            channel = await self._records()
            name = self.topo.record_queue(session_id)
            await (await channel.get_queue(name, ensure=False)).purge()
            note = {k: v for k, v in record.items() if k != "outcome"}  # out: keep it small
            await channel.default_exchange.publish(
                json_message({**note, "finished": True}),
                routing_key=name,
                mandatory=False,
                timeout=PUBLISH_TIMEOUT_S,
            )

    def _on_reconnect(self, *_: object) -> None:
        task = asyncio.create_task(self._retake_claims(), name="retake-claims")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retake_claims(self) -> None:
        """After a reconnect, take this worker's claims again; report the ones another took."""
        async with self._claim_lock:
            self._claim_channel = None
            lost = []
            for session_id in list(self._claims):
                channel = await self._fresh_claim_channel()
                try:
                    self._claims[session_id] = await channel.declare_queue(
                        self.topo.claim_queue(session_id),
                        exclusive=True,
                        auto_delete=False,
                        robust=False,
                    )
                except aiormq.exceptions.ChannelLockedResource:
                    self._claim_channel = None
                    del self._claims[session_id]
                    lost.append(session_id)
        for session_id in list(self._claims):
            record = await self.read_record(session_id)
            if record is not None and record.get("finished"):
                lost.append(session_id)  # a reaper finished it while we were away
        log.info("broker.claims_retaken", kept=len(self._claims), lost=len(lost))
        for session_id in lost:
            self.on_claim_lost(session_id)

    async def _fresh_claim_channel(self) -> AbstractRobustChannel:
        if self._claim_channel is None or self._claim_channel.is_closed:
            assert self.connection is not None, "connect() first"
            self._claim_channel = await self.connection.channel(publisher_confirms=False)
        return self._claim_channel

    async def aclose(self) -> None:
        """Close the connection (idempotent); every claim queue goes with it."""
        self._claims.clear()
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()
