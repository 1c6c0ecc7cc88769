"""Session records: the leased note each session keeps on the broker (a dead man's switch that a
reaper finishes the session from when its worker dies), on a channel of their own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from aio_pika.abc import AbstractQueue, AbstractRobustChannel

from worker.broker import (
    CHANNEL_ERRORS,
    PUBLISH_TIMEOUT_S,
    Broker,
    BrokerUnavailable,
    json_message,
)

# Session records: one expiry for all (the longest session + 1 h), so every declaration matches;
# and a bound on concurrent record RPCs, so a burst of starts queues instead of timing out.
RECORD_EXPIRES_S = 14400 + 3600
BOOKKEEPING_CONCURRENCY = 32
# The lease of a note that carries a session's outcome (see `write_outcome`): it only runs out
# when the publisher died (or the broker is away) between the event and `finish`.
OUTCOME_LEASE_S = 10.0


async def _peek(queue: AbstractQueue) -> dict[str, Any] | None:
    """The note at the head of a record queue, left in place with its lease untouched."""
    message = await queue.get(no_ack=False, fail=False)
    if message is None:
        return None
    record: dict[str, Any] = json.loads(message.body)
    await message.nack(requeue=True)  # back in place, its lease untouched
    return record


# Notes a record queue can hold ahead of a new one: the running note and copies reapers re-armed.
MAX_NOTES_AHEAD = 8


class SessionRecords:
    """Each session's note in its own record queue: open, write, re-arm, read, finish."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.topo = broker.topo
        self._records_channel: AbstractRobustChannel | None = None
        self._bookkeeping = asyncio.Semaphore(BOOKKEEPING_CONCURRENCY)

    def _record_arguments(self) -> dict[str, Any]:
        return {
            "x-expires": RECORD_EXPIRES_S * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.topo.lost_queue,
        }

    async def _records(self) -> AbstractRobustChannel:
        """Records have their own channel: event confirms never wait behind their queue RPCs."""
        if self._records_channel is None or self._records_channel.is_closed:
            assert self._broker.connection is not None, "connect() first"
            self._records_channel = await self._broker.connection.channel(publisher_confirms=True)
        return self._records_channel

    async def open(self, session_id: str) -> dict[str, Any] | None:
        try:
            return await self._open(session_id)
        except CHANNEL_ERRORS as exc:
            self._records_channel = None  # never reuse a channel an error may have closed
            raise BrokerUnavailable(f"the broker connection is down ({exc})") from exc

    async def _open(self, session_id: str) -> dict[str, Any] | None:
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
            return await _peek(queue)

    async def write(
        self, session_id: str, record: dict[str, Any], *, lease_s: float, replace: bool
    ) -> None:
        try:
            await self._write(session_id, record, lease_s=lease_s, replace=replace)
        except CHANNEL_ERRORS as exc:
            self._records_channel = None
            raise BrokerUnavailable(f"the broker connection is down ({exc})") from exc

    async def _write(
        self, session_id: str, record: dict[str, Any], *, lease_s: float, replace: bool
    ) -> None:
        """Put the session's note (with a lease) in its queue, opened by `open`;
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

    async def rearm(self, session_id: str, record: dict[str, Any], *, lease_s: float) -> None:
        """Put a fresh lease on the session's note (its previous one has run out)."""
        await self.write(session_id, record, lease_s=lease_s, replace=False)

    async def read(self, session_id: str) -> dict[str, Any] | None:
        """The session's note, or None when there is none (it never got that far, or expired)."""
        assert self._broker.connection is not None
        channel = await self._broker.connection.channel()
        try:
            queue = await channel.declare_queue(
                self.topo.record_queue(session_id), passive=True, robust=False
            )
            return await _peek(queue)
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
        `finish`, the reaper that gets the lapsed note republishes that same event (a copy
        consumers can dedupe), never another outcome. Waits out a broker outage like
        `finish`.

        The outcome note is added behind the running one first, then the notes ahead of it are
        taken off: the queue never stands empty (purge, then publish, left nothing for a reaper
        to find when the worker died in between, and the session never got an outcome)."""
        lease_s = min(lease_s, OUTCOME_LEASE_S)
        await self._patiently(
            lambda: self._write_outcome(session_id, record, lease_s=lease_s),
            "write the session's outcome",
            patience_s,
        )

    async def _write_outcome(
        self, session_id: str, record: dict[str, Any], *, lease_s: float
    ) -> None:
        await self._write(session_id, record, lease_s=lease_s, replace=False)
        async with self._bookkeeping:
            channel = await self._records()
            queue = await channel.get_queue(self.topo.record_queue(session_id), ensure=False)
            for _ in range(MAX_NOTES_AHEAD):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    return
                if json.loads(message.body).get("outcome") == record["outcome"]:
                    await message.nack(requeue=True)  # ours, now at the head: back in place
                    return
                await message.ack()  # the running note, or a reaper's re-armed copy of it

    async def finish(
        self, session_id: str, record: dict[str, Any], *, patience_s: float = 60.0
    ) -> None:
        """Mark the session's note finished, with no lease (the queue expires by itself later): a
        copy of the job that arrives meanwhile, on any worker, is known for a duplicate. Waits
        out a broker outage (up to `patience_s`): a note left unfinished would make a reaper
        publish its outcome again."""
        await self._patiently(
            lambda: self._finish(session_id, record),
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

    async def _finish(self, session_id: str, record: dict[str, Any]) -> None:
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
