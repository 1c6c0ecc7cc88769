"""The job consumer, and the only place that decides a delivery's fate: ack, requeue, retry later
(through a delay queue) or dead-letter (with an `x-avatar-error` header).

Ack policy: a job is acked once its session is `ready` (or has reached its outcome), never held
for the whole session: RabbitMQ's consumer timeout (30 min by default) would otherwise close the
channel and redeliver live sessions. A worker that dies before `ready` leaves the job unacked, so
RabbitMQ redelivers it and the next worker resumes it (the session's claim and name make that safe).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from worker.broker import (
    Broker,
    BrokerError,
    broker_errors,
    declare_job_topology,
    declare_retry_queues,
    json_message,
)
from worker.choices import AllowedChoices, check_choices
from worker.contract import DEFAULT_MAX_DURATION_S, InvalidMessage, parse_job
from worker.core.claims import wait_out_dying_claim
from worker.core.delivery import JobResult, NotNow, Rejected, Settled, delivery_for
from worker.core.events import EventRoute
from worker.core.manager import SessionManager

log = structlog.get_logger(__name__)

ATTEMPT_HEADER = "x-avatar-attempt"
STARTING_COPY_REQUEUE_S = 1.0
MAX_COPIED_HEADER_BYTES = 16 * 1024
ERROR_HEADER = "x-avatar-error"


def attempt_of(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    if isinstance(value, int | str):
        try:
            return max(int(value), 1)
        except ValueError:
            return 1
    return 1


def copied_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The headers a retry or dead-letter copy keeps: the producer's, minus the largest ones when
    together they would leave no room for ours in one AMQP frame (the broker would then close
    the worker's whole connection); the names dropped are listed in x-avatar-headers-dropped."""
    headers: dict[str, Any] = dict(message.headers or {})
    sizes = {name: len(repr(value).encode()) + len(name) for name, value in headers.items()}
    total = sum(sizes.values())
    dropped = []
    for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= MAX_COPIED_HEADER_BYTES:
            break
        total -= sizes[name]
        del headers[name]
        dropped.append(name)
    if dropped:
        headers["x-avatar-headers-dropped"] = ",".join(dropped)[:200]
    return headers


class Intake:
    """Consumes `session.start` jobs while this worker has free capacity."""

    def __init__(
        self,
        broker: Broker,
        sessions: SessionManager,
        *,
        retry_delays_s: list[float],
        worker_id: str,
        is_overloaded: Callable[[], bool] = lambda: False,
        on_dead_letter: Callable[[str], None] = lambda _kind: None,
        allowed_choices: AllowedChoices | None = None,
        default_max_duration_s: int = DEFAULT_MAX_DURATION_S,
    ) -> None:
        self._default_max_duration_s = default_max_duration_s
        self._allowed_choices = allowed_choices or AllowedChoices()
        self._is_overloaded = is_overloaded
        self._on_dead_letter = on_dead_letter
        self._broker = broker
        self._sessions = sessions
        self._retry_delays_s = retry_delays_s
        self._worker_id = worker_id
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._accepting = False
        self._toggle_lock = asyncio.Lock()
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def is_consuming(self) -> bool:
        return self._consumer_tag is not None

    async def start(self) -> None:
        """Declare the topology and start consuming."""
        self._channel = await self._broker.channel()
        self._queue = await declare_job_topology(self._channel, self._broker.topo)
        await declare_retry_queues(self._channel, self._broker.topo, self._retry_delays_s)
        self._accepting = True
        await self.refresh()
        # A refresh the connection's loss broke is done again once it is back: an idle worker
        # (no slot taken or freed to call `capacity_changed`) must not stay paused.
        assert self._broker.connection is not None
        self._broker.connection.reconnect_callbacks.add(lambda *_: self.capacity_changed())

    def capacity_changed(self) -> None:
        """Called by the session manager whenever a slot is taken or freed."""
        if self._accepting:
            task = asyncio.create_task(self._refresh_in_background())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh()
        except BrokerError as exc:  # the connection is down: done again on reconnect
            log.warning("intake.refresh_failed", error=str(exc))

    async def refresh(self) -> None:
        """Consume while there is free capacity (prefetch = free slots); pause when full."""
        async with self._toggle_lock:
            free = 0 if self._is_overloaded() else self._sessions.free
            if self._accepting and free > 0 and self._consumer_tag is None:
                assert self._channel is not None and self._queue is not None
                with broker_errors("start consuming jobs"):
                    await self._channel.set_qos(prefetch_count=free)
                    self._consumer_tag = await self._queue.consume(self._on_message)
                log.info("intake.consuming", free=free)
            elif (not self._accepting or free == 0) and self._consumer_tag is not None:
                tag, self._consumer_tag = self._consumer_tag, None
                assert self._queue is not None
                with contextlib.suppress(BrokerError), broker_errors("stop consuming"):
                    await self._queue.cancel(tag)
                log.info("intake.paused", free=free, accepting=self._accepting)

    async def stop_accepting(self) -> None:
        """Stop taking jobs at once (drain); jobs not yet started go back to the queue."""
        self._accepting = False
        await self.refresh()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if not self._accepting:
            await self._settle(message, NotNow("worker draining"))
            return
        try:
            job = parse_job(message.body).with_worker_defaults(
                max_duration_s=self._default_max_duration_s
            )
            check_choices(job, self._allowed_choices)  # before anything paid exists
            if message.reply_to and self._broker.topo.is_own_queue(message.reply_to):
                raise InvalidMessage(
                    f"reply_to {message.reply_to[:200]!r} names one of the worker's own queues; "
                    "events go to a queue of the producer's",
                    session_id=job.session_id,
                )
        except InvalidMessage as exc:
            log.warning("intake.invalid_job", reason=exc.reason, session_id=exc.session_id)
            await self._settle(message, Rejected(exc.reason))
            return
        if message.redelivered:
            # Its claim may still be held by the dead connection it was redelivered from (the
            # broker drops that claim a moment later); the start would take it for a session
            # live elsewhere and drop the job. Before the checks below, which hold together.
            await wait_out_dying_claim(self._broker, job.session_id)
            if not self._accepting:
                await self._settle(message, NotNow("worker draining"))
                return
        if self._sessions.is_starting(job.session_id):
            # A copy redelivered after an outage while the first is still starting here: the
            # first copy's delivery is gone, so this one must survive until the start settles.
            await asyncio.sleep(STARTING_COPY_REQUEUE_S)
            await self._settle(message, NotNow("session still starting"))
            return
        if self._sessions.is_known(job.session_id):
            log.info("intake.duplicate", session_id=job.session_id)
            await self._settle(message, Settled("duplicate"))
            return
        if self._is_overloaded() or not self._sessions.try_reserve():
            await self._settle(message, NotNow("worker full"))
            await self._refresh_in_background()
            return
        self.capacity_changed()
        route = EventRoute.for_job(
            job,
            worker_id=self._worker_id,
            attempt=attempt_of(message),
            reply_to=message.reply_to,
            correlation_id=message.correlation_id or message.message_id,
        )
        result = await self._sessions.start(job, route, redelivered=bool(message.redelivered))
        await self._settle(message, result)

    async def _settle(self, message: AbstractIncomingMessage, result: JobResult) -> None:
        """Carry out on the delivery what the result calls for; a lost channel means RabbitMQ
        redelivers it."""
        delivery = delivery_for(result)
        try:
            with broker_errors(f"{delivery.action} the job"):
                if delivery.action == "ack":
                    await message.ack()
                elif delivery.action == "requeue":
                    await message.nack(requeue=True)
                elif delivery.action == "retry":
                    await self._republish_for_retry(message, delivery.delay_s)
                    await message.ack()
                elif delivery.action == "defer":
                    log.info("intake.deferred", reason=delivery.reason)
                    await self._republish_for_retry(message, min(self._retry_delays_s), next=False)
                    await message.ack()
                else:
                    await self._dead_letter(message, delivery.reason)
                    await message.ack()
                    self._on_dead_letter(delivery.dead_letter_kind)
        except BrokerError as exc:
            log.warning("intake.settle_failed", action=delivery.action, error=str(exc))

    async def _republish_for_retry(
        self, message: AbstractIncomingMessage, delay_s: float, *, next: bool = True
    ) -> None:
        """Back to the jobs exchange through a delay queue; `next`: as the next attempt."""
        headers = copied_headers(message)
        headers[ATTEMPT_HEADER] = attempt_of(message) + (1 if next else 0)
        await self._broker.publish(
            self._copy(message, headers), routing_key=self._broker.topo.retry_queue(delay_s)
        )

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        headers = copied_headers(message)
        headers[ERROR_HEADER] = reason.replace("\n", " ")[:500]
        headers["x-avatar-worker"] = self._worker_id
        await self._broker.publish(
            self._copy(message, headers), routing_key=self._broker.topo.dead_letter_queue
        )
        log.warning("intake.dead_lettered", reason=headers[ERROR_HEADER])

    @staticmethod
    def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
        copy = json_message(
            message.body,
            headers=headers,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            message_id=message.message_id,
        )
        copy.content_type = message.content_type or "application/json"
        return copy

    async def aclose(self) -> None:
        self._accepting = False
        for task in list(self._in_flight):
            task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(BrokerError), broker_errors("close the intake channel"):
                await self._channel.close()
