"""The reaper: a periodic, leader-free sweep (safe on every worker) that finishes sessions whose
worker died — ends their Tavus conversations, deletes their Daily rooms, publishes `ended`
(`worker_lost`) from the session's record, or, when the record carries the outcome its worker
was publishing as it died, that same event again (a copy, never a second outcome).

A resource is ours when its name starts with the session-name prefix; it is an orphan when no live
connection has held its session's claim queue for a grace period (a worker that is only
reconnecting to the broker takes its claims back within seconds). The reaper takes that claim
itself before touching anything, so two reapers (or a redelivered job) never act on one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage

from tavus.client import TavusClient
from tavus.daily import DailyClient, room_name_for
from tavus.errors import NotFoundError, ProviderError
from worker.broker import QUORUM, Broker, BrokerError, broker_errors, declare_replicated_queue
from worker.contract import SESSION_ID_PATTERN, EndReason
from worker.core.adoption import Adopter
from worker.core.claims import SessionClaims
from worker.core.events import EventPublisher, EventRoute
from worker.core.records import SessionRecord, SessionRecords, parse_record
from worker.sessions.transcript import fetch_transcript

log = structlog.get_logger(__name__)

_SESSION_ID = re.compile(SESSION_ID_PATTERN)
SWEEP_ERRORS: tuple[type[BaseException], ...] = (ProviderError, BrokerError)
REMEMBERED_REAPS = 10_000


@dataclass
class Orphan:
    """What the providers hold for one session id."""

    session_id: str
    conversation_ids: list[str] = field(default_factory=list)
    room_names: set[str] = field(default_factory=set)


class Reaper:
    """Finds and finishes sessions that belong to this service but to no live worker."""

    def __init__(
        self,
        *,
        broker: Broker,
        claims: SessionClaims,
        records: SessionRecords,
        events: EventPublisher,
        tavus: TavusClient,
        daily: DailyClient | None,
        prefix: str,
        worker_id: str,
        interval_s: float,
        is_live_here: Any,
        grace_s: float = 30.0,
        lease_s: float = 60.0,
        clock: Any = time.monotonic,
        adopter: Adopter | None = None,
        was_stopped: Callable[[str], bool] = lambda _session_id: False,
    ) -> None:
        self._adopter = adopter
        self._was_stopped = was_stopped
        self._lease_s = lease_s
        self._grace_s = grace_s
        self._clock = clock
        self._suspects: dict[str, float] = {}  # session id -> when first seen unclaimed
        self._in_transit: dict[str, float] = {}  # session id -> when its record first was away
        self._reaped: OrderedDict[str, None] = OrderedDict()  # finished here: never again
        # Being finished here right now, by the sweep or the lease path. A claim is this
        # worker's, not one path's: without this, both paths could finish one session at once.
        self._busy: set[str] = set()
        self._broker = broker
        self._claims = claims
        self._records = records
        self._events = events
        self._tavus = tavus
        self._daily = daily
        self._prefix = prefix
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._is_live_here = is_live_here
        self.reaped_total = 0

    async def watch_leases(self) -> None:
        """Consume the records whose lease ran out (one reaper gets each): re-arm the ones whose
        session is still claimed; adopt or finish the others. This also finds sessions that left
        nothing at the providers (a worker killed between releasing them and publishing
        `ended`)."""
        channel = await self._broker.channel(prefetch=10)
        queue = await declare_replicated_queue(channel, self._broker.topo.lost_queue, QUORUM)
        with broker_errors("consume the lost queue"):
            await queue.consume(self._on_lapsed)

    async def _on_lapsed(self, message: AbstractIncomingMessage) -> None:
        settled = False

        async def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                with contextlib.suppress(BrokerError), broker_errors("ack a lapsed record"):
                    await message.ack()

        record = parse_record(message.body)
        if record is None:
            await settle()  # logged; nothing can be done with it
            return
        try:
            await self.lease_lapsed(record, settle=settle)
        except SWEEP_ERRORS as exc:
            log.warning("reaper.lease_check_failed", error=str(exc) or type(exc).__name__)
            if settled:
                return  # the session's record carries its outcome now, under its own lease
            await asyncio.sleep(min(self._lease_s, 5.0))
            with contextlib.suppress(BrokerError), broker_errors("give a lapsed record back"):
                await message.nack(requeue=True)
            return
        await settle()

    async def lease_lapsed(
        self, record: SessionRecord, *, settle: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Handle one lapsed record; True when it adopted or finished the session. `settle`
        (ack the lapsed record) is called as soon as the record queue holds what this reaper
        decided (the adopter's record, or the outcome it is about to publish): from then on
        that is the session's only record, so a reaper that dies meanwhile leaves no stale one
        behind to be finished differently."""
        sid = record.session_id
        if sid in self._reaped:
            return False
        if self._is_live_here(sid) or await self._claims.is_claimed_elsewhere(sid):
            await self._records.rearm(
                record.model_copy(update={"unclaimed_since": None}), lease_s=self._lease_s
            )
            return False
        # Unclaimed: its worker may only be reconnecting. The first reaper to see that writes
        # the time into the record; whichever reaper gets it after the grace period acts.
        if record.unclaimed_since is None:
            record = record.model_copy(update={"unclaimed_since": time.time()})
        assert record.unclaimed_since is not None
        left_s = self._grace_s - (time.time() - record.unclaimed_since)
        if left_s > 0:
            await self._records.rearm(record, lease_s=max(left_s, 0.2))
            return False
        if sid in self._busy:  # the sweep is finishing it here: this record goes back, unused
            await self._records.rearm(record, lease_s=self._lease_s)
            return False
        self._busy.add(sid)
        try:
            return await self._take_over_lapsed(record, settle)
        finally:
            self._busy.discard(sid)

    async def _take_over_lapsed(
        self, lapsed: SessionRecord, settle: Callable[[], Awaitable[None]] | None
    ) -> bool:
        sid = lapsed.session_id
        if not await self._claims.claim(sid):
            await self._records.rearm(lapsed, lease_s=self._lease_s)
            return False
        adopted = False
        try:
            current = await self._records.read(sid)
            if current is not None and current.finished:
                return False  # it finished meanwhile (an empty queue: the lapsed record is all)
            record = SessionRecord.deciding([r for r in (current, lapsed) if r is not None])
            assert record is not None
            ended_by_itself: EndReason | None = None
            if self._adopter is not None and record.is_adoptable:
                ended_by_itself = await self._adopter.adopt(record)
                if ended_by_itself is None:
                    adopted = True  # the claim stays: the session is this worker's now
                    if settle is not None:
                        await settle()
                    return True
            orphan = Orphan(sid)
            orphan.conversation_ids = [
                c.conversation_id
                for c in await self._tavus.find_conversations_by_name(
                    f"{self._prefix}{sid}", status="active"
                )
            ]
            await self._finish(
                orphan, lapsed=record, settle=settle, reason=ended_by_itself or "worker_lost"
            )
            self.reaped_total += 1
            return True
        finally:
            if not adopted:
                await self._claims.release(sid)

    async def run(self) -> None:
        """Sweep forever at a jittered interval (so workers do not sweep in lockstep)."""
        while True:
            await asyncio.sleep(self._interval_s * (0.5 + random.random()))
            try:
                async with asyncio.timeout(max(self._interval_s, 30.0) * 2):
                    await self.sweep_once()
            except SWEEP_ERRORS as exc:
                log.warning("reaper.sweep_failed", error=str(exc) or type(exc).__name__)

    async def sweep_once(self) -> list[str]:
        """One sweep; returns the session ids it finished."""
        reaped = []
        now = self._clock()
        candidates = await self._candidates()
        for sid in set(self._suspects) - set(candidates):
            del self._suspects[sid]  # gone by itself
            self._in_transit.pop(sid, None)
        for orphan in candidates.values():
            sid = orphan.session_id
            if sid in self._reaped and not orphan.conversation_ids and not orphan.room_names:
                continue
            if self._is_live_here(sid) or await self._claims.is_claimed_elsewhere(sid):
                self._suspects.pop(sid, None)
                continue
            if now - self._suspects.setdefault(sid, now) < self._grace_s:
                continue  # its worker may just be reconnecting: look again next sweep
            if sid in self._busy:
                continue  # the lease path is finishing it here
            self._busy.add(sid)
            try:
                if await self._finish_claimed(orphan):
                    reaped.append(sid)
                    self._suspects.pop(sid, None)
            finally:
                self._busy.discard(sid)
        self.reaped_total += len(reaped)
        return reaped

    async def _finish_claimed(self, orphan: Orphan) -> bool:
        if not await self._claims.claim(orphan.session_id):
            return False
        try:
            sid = orphan.session_id
            has_queue, record = await self._records.look(sid)
            if has_queue and record is None:
                # Its record's lease has just run out: the lease path decides, from the record.
                # A record away for much longer than a lease cycle is lost (the broker dropped
                # it): the session's resources are released and it ends worker_lost, with what
                # is known of it, rather than leak its paid conversation and never end.
                away_s = self._clock() - self._in_transit.setdefault(sid, self._clock())
                if away_s < 3 * self._lease_s + self._grace_s:
                    log.info("reaper.record_in_transit", session_id=sid)
                    return False
                log.error("reaper.record_lost", session_id=sid, away_s=round(away_s, 1))
                record = SessionRecord(session_id=sid)
                await self._finish(orphan, lapsed=record)
                return True
            self._in_transit.pop(sid, None)
            if self._adopter is not None and record is not None and record.is_adoptable:
                # Its call goes on: the lease path adopts it once the record's lease runs out.
                log.info("reaper.left_for_adoption", session_id=orphan.session_id)
                return False
            await self._finish(orphan)
            return True
        finally:
            await self._claims.release(orphan.session_id)

    async def _candidates(self) -> dict[str, Orphan]:
        found: dict[str, Orphan] = defaultdict(lambda: Orphan(""))
        async for conversation in self._tavus.iter_conversations(status="active"):
            sid = self._session_id(conversation.conversation_name)
            if sid is not None:
                found[sid].session_id = sid
                found[sid].conversation_ids.append(conversation.conversation_id)
        if self._daily is not None:
            async for room in self._daily.iter_rooms():
                sid = self._session_id(room.name)
                if sid is not None and room_name_for(sid, self._prefix) == room.name:
                    found[sid].session_id = sid
                    found[sid].room_names.add(room.name)
        return dict(found)

    def _session_id(self, name: str | None) -> str | None:
        if not name or not name.startswith(self._prefix):
            return None
        sid = name[len(self._prefix) :]
        return sid if _SESSION_ID.match(sid) else None

    async def _finish(
        self,
        orphan: Orphan,
        lapsed: SessionRecord | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
        reason: EndReason = "worker_lost",
    ) -> None:
        """End what the session left at the providers and, if its outcome is not out yet,
        publish it from its record (`_publish_outcome`). Only a session whose outcome is known to
        be out is remembered as reaped: without a record (its lease has lapsed and is on its
        way to a reaper), the lease path publishes the outcome later."""
        sid = orphan.session_id
        log.warning(
            "reaper.orphan",
            session_id=sid,
            conversations=orphan.conversation_ids,
            rooms=sorted(orphan.room_names),
        )
        for cid in orphan.conversation_ids:
            with contextlib.suppress(NotFoundError):
                await self._tavus.end_conversation(cid)
        if self._daily is not None:
            for name in orphan.room_names | {room_name_for(sid, self._prefix)}:
                await self._daily.delete_room(name)
        current = await self._records.read(sid)
        record = SessionRecord.deciding([r for r in (current, lapsed) if r is not None])
        if sid in self._reaped:
            log.info("reaper.late_resources_released", session_id=sid)  # outcome already out
            return
        if record is None:
            log.info("reaper.outcome_left_to_lease", session_id=sid)
            return
        if not record.finished:
            if reason == "worker_lost" and self._was_stopped(sid):
                reason = "stopped"  # its user asked for that before its worker died
            await self._publish_outcome(record, settle, reason)
        self._reaped[sid] = None
        while len(self._reaped) > REMEMBERED_REAPS:
            self._reaped.popitem(last=False)

    async def _publish_outcome(
        self,
        record: SessionRecord,
        settle: Callable[[], Awaitable[None]] | None,
        reason: EndReason,
    ) -> None:
        """Publish the session's one outcome and finish its record. A record that carries an
        outcome (its worker wrote it there before publishing it, then died or lost the broker)
        gives that very event again: a copy, never a second outcome. Otherwise `ended` with
        `reason` (`worker_lost`, or how its conversation ended while nobody followed it),
        itself written into the record first, so a reaper that dies here leaves the same event
        for the next one."""
        route = EventRoute.from_record(record, worker_id=self._worker_id)
        event = record.outcome
        if event is not None:
            log.info(
                "reaper.outcome_republished", session_id=record.session_id, status=event.status
            )
        else:
            transcript = None
            if record.job is not None and record.job.transcript and record.conversation_id:
                # What Tavus kept (phoenix_rest): the conversation was ended above.
                transcript = await fetch_transcript(self._tavus, record.conversation_id)
            event = self._events.ended_event(route, reason, record.age_s, transcript)
            await self._records.write_outcome(
                record.model_copy(update={"outcome": event}), lease_s=self._lease_s
            )
            if settle is not None:
                await settle()
        await self._events.publish(route, event)
        await self._records.finish(record)
