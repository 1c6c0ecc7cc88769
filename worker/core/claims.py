"""Cross-worker session claims: a session is *claimed* by declaring an exclusive queue named after
it. RabbitMQ lets one connection hold it and drops it when that connection dies, so any worker can
tell a live session from an orphan; after a reconnect this worker takes its claims back.
A redelivered job may meet the claim of the connection whose death redelivered it
(`wait_out_dying_claim`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from aio_pika.abc import AbstractQueue, AbstractRobustChannel

from worker.broker import (
    Broker,
    BrokerError,
    ResourceLocked,
    ResourceMissing,
    broker_errors,
)
from worker.core.records import SessionRecords

log = structlog.get_logger(__name__)

SETTLE_TIMEOUT_S = 30.0
# RabbitMQ closes a dead connection in steps that run in no fixed order: its unacked deliveries
# go back to their queues, its exclusive queues (claims) are deleted. On RabbitMQ 4.0.5 the claim
# outlived the redelivery in about half of the closes measured, by 10-100 ms (3.10: rarely).
DYING_CLAIM_WAIT_S = 5.0
DYING_CLAIM_FIRST_PAUSE_S = 0.02
DYING_CLAIM_MAX_PAUSE_S = 0.5
CLAIM_LOOK_TIMEOUT_S = 10.0


async def wait_out_dying_claim(
    broker: Broker, session_id: str, timeout_s: float | None = None
) -> None:
    """For a redelivered job, before its start claims the session: while another connection holds
    the claim, wait up to `timeout_s` (default `DYING_CLAIM_WAIT_S`) for it to go. The holder may
    be the dead connection that the job was redelivered from, whose claim RabbitMQ deletes a
    moment after the redelivery; the start would take that for a session live elsewhere and drop
    the job. A claim still held after the wait is a live worker's: the start then finds it so. A
    broker error ends the wait (the start meets it too)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    wait_s = DYING_CLAIM_WAIT_S if timeout_s is None else timeout_s
    pause_s = DYING_CLAIM_FIRST_PAUSE_S
    looks = 0
    try:
        async with asyncio.timeout(wait_s + CLAIM_LOOK_TIMEOUT_S):
            while await _is_held_by_another_connection(broker, session_id):
                looks += 1
                waited_s = loop.time() - started
                if waited_s >= wait_s:
                    log.info("claims.held_elsewhere", session_id=session_id, waited_s=wait_s)
                    return
                await asyncio.sleep(min(pause_s, wait_s - waited_s))
                pause_s = min(pause_s * 2, DYING_CLAIM_MAX_PAUSE_S)
    except (BrokerError, TimeoutError) as exc:
        log.warning("claims.look_failed", session_id=session_id, error=str(exc) or "timeout")
        return
    if looks:
        log.info(
            "claims.dying_claim_gone",
            session_id=session_id,
            waited_s=round(loop.time() - started, 3),
        )


async def _is_held_by_another_connection(broker: Broker, session_id: str) -> bool:
    """True when another connection holds the session's claim (a passive declare on this
    connection succeeds for a claim it holds itself)."""
    try:
        async with broker.brief_channel(f"look at the claim on {session_id}") as channel:
            await channel.declare_queue(
                broker.topo.claim_queue(session_id), passive=True, robust=False
            )
    except ResourceLocked:
        return True
    except ResourceMissing:
        return False
    return False


class SessionClaims:
    """This worker's claims on the shared connection, with a channel of their own."""

    def __init__(self, broker: Broker, records: SessionRecords) -> None:
        self._broker = broker
        self._records = records
        self.topo = broker.topo
        self._claim_channel: AbstractRobustChannel | None = None
        self._claims: dict[str, AbstractQueue] = {}
        self._claim_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # Called with a session id whose claim another worker (or a reaper) took during an outage.
        self.on_claim_lost: Callable[[str], None] = lambda _session_id: None
        # Set while every claim this worker holds is known to be its own; cleared from a lost
        # connection until the claims are taken back (`settled`).
        self._settled = asyncio.Event()
        self._settled.set()
        self._outages = 0

    def watch_reconnects(self) -> None:
        """Take the claims back after every reconnect of the broker connection (once connected)."""
        assert self._broker.connection is not None, "connect() first"
        self._broker.connection.close_callbacks.add(self._on_connection_lost)
        self._broker.connection.reconnect_callbacks.add(self._on_reconnect)

    async def settled(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Return once this worker's claims are known to be its own again after an outage (at
        once when there was none). Events wait for it: during an outage another worker may have
        taken a session over, and a session whose claim is lost is silenced before they go on
        (the publisher checks it after this). Gives up waiting after `timeout_s`."""
        if self._settled.is_set():
            return
        try:
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        except TimeoutError:
            log.warning("claims.unsettled", waited_s=timeout_s)

    def _on_connection_lost(self, *_: object) -> None:
        self._outages += 1
        if self._claims:
            self._settled.clear()

    async def claim(self, session_id: str) -> bool:
        """Take the cluster-wide claim on a session; False when another connection holds it, or
        when this worker holds it already: one holder per session here too (a job's start and
        a reaper adopting the same session on one worker would otherwise both run it).

        Raises BrokerUnavailable while the connection is down.
        """
        async with self._claim_lock:
            if session_id in self._claims:
                return False
            try:
                self._claims[session_id] = await self._declare_claim(session_id)
            except ResourceLocked:
                return False
            return True

    async def _declare_claim(self, session_id: str) -> AbstractQueue:
        """Declare the session's exclusive claim queue on the claims channel. robust=False:
        aio-pika must not re-declare claims by itself on reconnect (a claim another worker took
        meanwhile would make every reconnect fail); `_retake_claims` does it and reports the
        ones that are lost. A channel an error closed is never reused."""
        try:
            with broker_errors(f"claim session {session_id}"):
                channel = await self._fresh_claim_channel()
                return await channel.declare_queue(
                    self.topo.claim_queue(session_id),
                    exclusive=True,
                    auto_delete=False,
                    robust=False,
                )
        except BrokerError:
            self._claim_channel = None
            raise

    def adopt_claim(self, session_id: str, queue: AbstractQueue) -> None:
        """Keep a claim taken elsewhere on this connection (by the reaper) as this worker's."""
        self._claims[session_id] = queue

    async def release(self, session_id: str) -> None:
        """Drop the claim (idempotent); the queue also disappears if this connection dies."""
        async with self._claim_lock:
            queue = self._claims.pop(session_id, None)
            if queue is None:
                return
            try:
                with broker_errors(f"release the claim on {session_id}"):
                    await queue.delete(if_unused=False, if_empty=False)
            except BrokerError as exc:
                log.warning("claims.release_failed", session_id=session_id, error=str(exc))
                self._claim_channel = None

    def holds(self, session_id: str) -> bool:
        """True when this worker holds the session's claim."""
        return session_id in self._claims

    async def is_claimed_elsewhere(self, session_id: str) -> bool:
        """True when some live connection holds this session's claim."""
        if session_id in self._claims:
            return False
        try:
            async with self._broker.brief_channel(f"look at the claim on {session_id}") as channel:
                await channel.declare_queue(
                    self.topo.claim_queue(session_id), passive=True, robust=False
                )
            return True
        except ResourceLocked:
            return True
        except ResourceMissing:
            return False

    def _on_reconnect(self, *_: object) -> None:
        task = asyncio.create_task(self._retake_claims(), name="retake-claims")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retake_claims(self) -> None:
        """After a reconnect, take this worker's claims again; report the ones another took. The
        claims count as settled afterwards, unless the connection was lost again meanwhile (the
        next reconnect retakes them)."""
        outages = self._outages
        try:
            await self._retake()
        except BrokerError as exc:
            log.warning("claims.retake_failed", error=str(exc))
        finally:
            if self._outages == outages:
                self._settled.set()

    async def _retake(self) -> None:
        started = time.monotonic()
        async with self._claim_lock:
            self._claim_channel = None
            lost = []
            for session_id in list(self._claims):
                try:
                    self._claims[session_id] = await self._declare_claim(session_id)
                except ResourceLocked:
                    del self._claims[session_id]
                    lost.append(session_id)
        for session_id in list(self._claims):
            record = await self._records.read(session_id)
            if record is not None and record.finished:
                lost.append(session_id)  # a reaper finished it while we were away
        # took_s: how long the retake took; events wait for it (`settled`).
        log.info(
            "claims.retaken",
            kept=len(self._claims),
            lost=len(lost),
            took_s=round(time.monotonic() - started, 3),
        )
        for session_id in lost:
            self.on_claim_lost(session_id)

    async def _fresh_claim_channel(self) -> AbstractRobustChannel:
        if self._claim_channel is None or self._claim_channel.is_closed:
            assert self._broker.connection is not None, "connect() first"
            self._claim_channel = await self._broker.connection.channel(publisher_confirms=False)
        return self._claim_channel

    async def aclose(self) -> None:
        """Forget every claim (idempotent): their queues go with the broker connection."""
        self._claims.clear()
