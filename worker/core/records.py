"""Session records: what each session keeps on the broker (`SessionRecord`), in a quorum queue of
its own, under a lease. The record is a dead man's switch: when its worker dies, the lease runs out,
the record lands in the `lost` queue and a reaper adopts the session or finishes it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.broker import (
    PUBLISH_TIMEOUT_S,
    QUORUM,
    Broker,
    BrokerError,
    BrokerUnavailable,
    ResourceMissing,
    broker_errors,
    dead_lettering_to,
    json_message,
)
from worker.contract import EndedEvent, FailedEvent, ResolvedMode, SessionJob

log = structlog.get_logger(__name__)

# One expiry for all record queues (the longest session + 1 h), so every declaration matches; a
# safety net only: a finished session's record queue is deleted once it has been kept
# `keep_finished_s` (see `finish`). And a bound on concurrent record RPCs, so a burst of starts
# queues instead of timing out.
RECORD_EXPIRES_S = 14400 + 3600
# How long deleting one finished record queue may take (a quorum queue with a member on a node
# that is down waits for it); past it, the queue is left to RECORD_EXPIRES_S.
DELETE_TIMEOUT_S = 30.0
BOOKKEEPING_CONCURRENCY = 32
# The lease of a record that carries a session's outcome (see `write_outcome`): it only runs out
# when the publisher died (or the broker is away) between the event and `finish`.
OUTCOME_LEASE_S = 10.0
# Records a queue can hold at once: the running one and copies reapers re-armed.
MAX_RECORDS_AHEAD = 8
# A record is looked at (taken and given back) on every redelivery and retake; quorum queues count
# that as a delivery, and RabbitMQ 4 dead-letters a message past 20 by default.
LOOKS_ALLOWED = 1_000_000

TerminalEvent = Annotated[EndedEvent | FailedEvent, Field(discriminator="status")]


class RecordFinished(BrokerError):
    """The session's record says it is finished: another worker published its outcome (this one
    lost its claim during an outage and does not know yet). Nothing was written."""


class SessionRecord(BaseModel):
    """What a session keeps on the broker: enough for any worker to publish its events (route),
    to adopt it (job, conversation) or to finish it (its outcome, once decided)."""

    model_config = ConfigDict(extra="ignore")

    session_id: str
    attempt: int = 1
    metadata: dict[str, Any] = Field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    mode: ResolvedMode | None = None
    worker_id: str = ""
    started_at: float = 0.0  # epoch seconds when the job was first taken
    job: SessionJob | None = None  # for a worker adopting the session
    conversation_id: str | None = None  # once `ready`
    adopted_from: str | None = None  # the worker that ran it before this one, if adopted
    unclaimed_since: float | None = None  # epoch seconds a reaper first found it unclaimed
    written_at: float = 0.0  # epoch seconds its worker wrote it (a re-armed copy keeps it)
    outcome: TerminalEvent | None = None  # its `ended` or `failed`, written before it is published
    finished: bool = False  # its outcome is out: a later copy of the job is a duplicate

    @property
    def is_concluded(self) -> bool:
        """Its one outcome is decided (maybe not yet published)."""
        return self.finished or self.outcome is not None

    @property
    def is_adoptable(self) -> bool:
        """A live phoenix_rest session another worker can follow: its conversation runs at Tavus
        without us (a pipecat_daily session's bot dies with its worker)."""
        return (
            self.mode == "phoenix_rest"
            and self.conversation_id is not None
            and self.job is not None
            and not self.is_concluded
        )

    @property
    def age_s(self) -> float:
        return max(time.time() - self.started_at, 0.0) if self.started_at else 0.0

    @classmethod
    def deciding(cls, records: list[SessionRecord]) -> SessionRecord | None:
        """Which of a session's records decides it: a finished one, then one that carries an
        outcome (a copy re-armed without it must not turn it into worker_lost), then the one
        its worker wrote last (a reaper may have re-armed an older copy, say from before the
        session was ready, beside it)."""
        for mark in ("finished", "outcome"):
            for record in records:
                if getattr(record, mark):
                    return record
        return max(records, key=lambda r: r.written_at) if records else None

    def to_message_body(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def parse_record(body: bytes) -> SessionRecord | None:
    """A record from a message body; None (logged) for one that cannot be read."""
    try:
        return SessionRecord.model_validate_json(body)
    except ValidationError as exc:
        log.error("records.unreadable", error=str(exc).splitlines()[0][:200])
        return None


class SessionRecords:
    """Each session's record in its own quorum queue: open, write, re-arm, read, finish."""

    def __init__(
        self, broker: Broker, *, replicated: bool = True, keep_finished_s: float = 600.0
    ) -> None:
        self._broker = broker
        self._replicated = replicated
        self._keep_finished_s = keep_finished_s
        self.topo = broker.topo
        self._channel: AbstractRobustChannel | None = None
        self._bookkeeping = asyncio.Semaphore(BOOKKEEPING_CONCURRENCY)
        # Finished sessions' record queues to delete: (when, session id), soonest first.
        self._to_delete: list[tuple[float, str]] = []
        self._deleting: asyncio.Task[None] | None = None
        self._delete_due = asyncio.Event()

    def arguments(self) -> dict[str, Any]:
        """Replicated: a quorum queue on 3 nodes whose lapsed record reaches the `lost` queue at
        least once, whatever node fails. Otherwise a classic queue on one node (a single broker
        gains nothing from replicas and saves a Raft group per session)."""
        expiry = {"x-expires": RECORD_EXPIRES_S * 1000}
        if not self._replicated:
            return {
                **expiry,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.topo.lost_queue,
            }
        return {
            **QUORUM,
            **expiry,
            "x-delivery-limit": LOOKS_ALLOWED,
            **dead_lettering_to("", self.topo.lost_queue),
        }

    async def _records_channel(self) -> AbstractRobustChannel:
        """Records have their own channel: event confirms never wait behind their queue RPCs."""
        if self._channel is None or self._channel.is_closed:
            assert self._broker.connection is not None, "connect() first"
            self._channel = await self._broker.connection.channel(publisher_confirms=True)
        return self._channel

    async def _run(self, what: str, op: Callable[[AbstractRobustChannel], Awaitable[Any]]) -> Any:
        """One record operation on the records channel, at most BOOKKEEPING_CONCURRENCY at once;
        a channel an error may have closed is never reused."""
        async with self._bookkeeping:
            try:
                with broker_errors(what):
                    return await op(await self._records_channel())
            except BrokerError:
                self._channel = None
                raise

    async def open(self, session_id: str) -> SessionRecord | None:
        """Declare the session's record queue (so writing needs nothing more) and return the
        record already in it, if any: a finished session's, or an earlier attempt's. The queue
        expires RECORD_EXPIRES_S after its last use, so nothing is left forever."""

        async def op(channel: AbstractRobustChannel) -> SessionRecord | None:
            queue = await channel.declare_queue(
                self.topo.record_queue(session_id),
                durable=True,
                arguments=self.arguments(),
                robust=False,
            )
            return await _look(queue, queue.declaration_result.message_count or 0)

        result: SessionRecord | None = await self._run("open the session record", op)
        return result

    async def write(self, record: SessionRecord, *, lease_s: float, replace: bool) -> None:
        """Put the record (with a lease) in its queue, opened by `open`; `replace` then takes
        off what was there before it (see `_replace`)."""
        record = record.model_copy(update={"written_at": time.time()})

        async def op(channel: AbstractRobustChannel) -> None:
            name = self.topo.record_queue(record.session_id)
            if replace:
                await _replace(channel, name, record, lease_s)
            else:
                await _publish(channel, name, record, lease_s)

        await self._run("write the session record", op)

    async def rearm(self, record: SessionRecord, *, lease_s: float) -> None:
        """Put a fresh lease on a copy of the session's record (its lease has run out); the
        copy keeps the time its worker wrote it."""

        async def op(channel: AbstractRobustChannel) -> None:
            await _publish(channel, self.topo.record_queue(record.session_id), record, lease_s)

        await self._run("re-arm the session record", op)

    async def read(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None when there is none (it never got that far, it expired,
        or its lease just ran out: see `look`)."""
        return (await self.look(session_id))[1]

    async def look(self, session_id: str) -> tuple[bool, SessionRecord | None]:
        """(whether the session has a record queue, the record in it). An existing queue with no
        record in it means the record's lease has just run out: it is on its way to a reaper
        through the `lost` queue."""
        try:
            async with self._broker.brief_channel("read the session record") as channel:
                queue = await channel.declare_queue(
                    self.topo.record_queue(session_id), passive=True, robust=False
                )
                return True, await _look(queue, queue.declaration_result.message_count or 0)
        except ResourceMissing:
            return False, None

    async def write_outcome(
        self, record: SessionRecord, *, lease_s: float, patience_s: float = 60.0
    ) -> None:
        """Replace the session's record with `record`, which carries its outcome (the terminal
        event exactly as it is about to be published), under a lease of at most
        OUTCOME_LEASE_S. Written before the event goes out: if the publisher dies before
        `finish`, the reaper that gets the lapsed record republishes that same event (a copy
        consumers can dedupe), never another outcome. Waits out a broker outage like `finish`.

        Written as `_replace` does: the queue never stands empty."""
        assert record.outcome is not None
        lease_s = min(lease_s, OUTCOME_LEASE_S)

        async def op(channel: AbstractRobustChannel) -> None:
            await _replace(channel, self.topo.record_queue(record.session_id), record, lease_s)

        await self._patiently(op, "write the session's outcome", patience_s)

    async def finish(self, record: SessionRecord, *, patience_s: float = 60.0) -> None:
        """Mark the session's record finished, with no lease: a copy of the job that arrives
        within `keep_finished_s`, on any worker, is known for a duplicate. Then the queue is
        deleted (`_delete_finished`): every record queue costs the broker a Raft group and file
        handles on each of its nodes, so only live sessions and recent outcomes keep one. Waits
        out a broker outage (up to `patience_s`): a record left unfinished would make a reaper
        publish its outcome again."""
        finished = record.model_copy(update={"finished": True, "outcome": None, "job": None})

        async def op(channel: AbstractRobustChannel) -> None:
            name = self.topo.record_queue(record.session_id)
            await (await channel.get_queue(name, ensure=False)).purge()
            await _publish(channel, name, finished, None)

        await self._patiently(op, "finish the session record", patience_s)
        self._delete_later(record.session_id)

    def _delete_later(self, session_id: str) -> None:
        loop = asyncio.get_running_loop()
        heapq.heappush(self._to_delete, (loop.time() + self._keep_finished_s, session_id))
        self._delete_due.set()
        if self._deleting is None or self._deleting.done():
            self._deleting = asyncio.create_task(
                self._delete_finished(), name="delete-finished-records"
            )

    async def _delete_finished(self) -> None:
        """Delete finished sessions' record queues once they have been kept long enough, one at
        a time; one that cannot be deleted now (the broker away, a node down) is left to its
        expiry (RECORD_EXPIRES_S)."""
        loop = asyncio.get_running_loop()
        while self._to_delete:
            due, session_id = self._to_delete[0]
            if due > loop.time():
                self._delete_due.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._delete_due.wait(), due - loop.time())
                continue
            heapq.heappop(self._to_delete)
            try:
                async with asyncio.timeout(DELETE_TIMEOUT_S):
                    async with self._broker.brief_channel("delete a finished record") as channel:
                        queue = await channel.get_queue(
                            self.topo.record_queue(session_id), ensure=False
                        )
                        await queue.delete(if_unused=False, if_empty=False)
            except (BrokerError, TimeoutError) as exc:
                log.info(
                    "records.left_to_expire",
                    session_id=session_id,
                    error=str(exc) or type(exc).__name__,
                    expires_s=RECORD_EXPIRES_S,
                )

    @property
    def finished_kept(self) -> int:
        """Finished sessions whose record queue is still kept (their deletion is pending)."""
        return len(self._to_delete)

    async def aclose(self) -> None:
        """Stop deleting: the queues still kept are left to their expiry (RECORD_EXPIRES_S)."""
        if self._deleting is not None:
            self._deleting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deleting
        if self._to_delete:
            log.info(
                "records.left_to_expire", count=len(self._to_delete), expires_s=RECORD_EXPIRES_S
            )
            self._to_delete.clear()

    async def _patiently(
        self,
        op: Callable[[AbstractRobustChannel], Awaitable[None]],
        what: str,
        patience_s: float,
    ) -> None:
        """Run a record operation, again every second while the broker is away (up to
        `patience_s`); then BrokerUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        while True:
            try:
                await self._run(what, op)
                return
            except BrokerError as exc:
                if loop.time() > deadline:
                    raise BrokerUnavailable(f"could not {what} ({exc})") from exc
                await asyncio.sleep(1.0)


async def _publish(
    channel: AbstractRobustChannel, queue: str, record: SessionRecord, lease_s: float | None
) -> str | None:
    """Publish a record (confirmed); returns its message id."""
    message = json_message(record.to_message_body())
    if lease_s is not None:
        message.expiration = lease_s
    await channel.default_exchange.publish(
        message, routing_key=queue, mandatory=False, timeout=PUBLISH_TIMEOUT_S
    )
    return message.message_id


async def _replace(
    channel: AbstractRobustChannel, queue_name: str, record: SessionRecord, lease_s: float
) -> None:
    """Put `record` in the queue, then take off the records ahead of it. The new one goes in
    first: the queue never stands empty, so a worker dying in between still leaves a record for
    a reaper (purging first would leave nothing, and the session no outcome).

    A finished record ahead of it is never taken off: the session's outcome is out, published by
    another worker, and this writer lost its claim without knowing yet. Its own record is taken
    back out instead (left in, its lease would run out and a reaper would give the session a
    second outcome), and RecordFinished is raised."""
    written_id = await _publish(channel, queue_name, record, lease_s)
    queue = await channel.get_queue(queue_name, ensure=False)
    ours: AbstractIncomingMessage | None = None
    finished: list[AbstractIncomingMessage] = []
    try:
        for _ in range(MAX_RECORDS_AHEAD + 1):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            if message.message_id == written_id:
                ours = message  # given back once the others are gone
                break
            earlier = parse_record(message.body)
            if earlier is not None and earlier.finished:
                finished.append(message)  # given back, whatever happens
                continue
            await message.ack()  # an earlier record, or a reaper's re-armed copy of it
        if ours is not None:
            if finished:
                await ours.ack()
            else:
                await ours.nack(requeue=True)
    finally:
        for message in finished:
            await message.nack(requeue=True)
    if finished:
        raise RecordFinished(f"session {record.session_id} is finished: its outcome is out")


async def _look(queue: AbstractQueue, count: int) -> SessionRecord | None:
    """The deciding record among the (at most MAX_RECORDS_AHEAD) in a queue, each taken and given
    back with its lease untouched. A quorum queue puts a record given back behind the others, so
    all are looked at: which one is at the head says nothing."""
    taken: list[AbstractIncomingMessage] = []
    try:
        for _ in range(min(count, MAX_RECORDS_AHEAD)):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            taken.append(message)
    finally:
        for message in taken:
            await message.nack(requeue=True)
    records = [r for r in (parse_record(m.body) for m in taken) if r is not None]
    return SessionRecord.deciding(records)
