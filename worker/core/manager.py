"""Live sessions of this worker: the registry, capacity (reservations), start, stop, abandon, drain.

`start()` returns what became of the job (a `JobResult`); what that means for its delivery is
`worker.core.delivery`'s to say and `worker.core.intake`'s to carry out. `adopt()` takes over a
live phoenix_rest session whose worker died. Every session that published `accepted` publishes
exactly one `ended` or `failed`, and its provider resources are released on every path
(`worker.core.lifecycle`, `worker.core.outcomes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog

from worker.contract import EndReason, SessionJob
from worker.core.claims import SessionClaims
from worker.core.delivery import JobResult
from worker.core.events import EventPublisher, EventRoute
from worker.core.lifecycle import SessionLifecycle
from worker.core.outcomes import RELEASE_TIMEOUT_S, SessionOutcomes
from worker.core.records import SessionRecord, SessionRecords
from worker.core.state import Phase, SessionState
from worker.modes import ModeResolver
from worker.ops.capacity import Capacity
from worker.ops.metrics import Metrics
from worker.sessions.base import LiveSession, SessionRunner

log = structlog.get_logger(__name__)

FINISHED_MEMORY = 10_000
# A stop for a session nobody here runs is kept this long: its worker may have died, and the
# session may be adopted here before its record's lease runs out.
UNCLAIMED_STOP_MEMORY_S = 600.0


class SessionManager:
    """Owns the live sessions and the capacity of this worker process."""

    def __init__(
        self,
        *,
        claims: SessionClaims,
        records: SessionRecords,
        events: EventPublisher,
        modes: ModeResolver,
        worker_id: str,
        max_sessions: int,
        max_attempts: int,
        retry_delays_s: list[float],
        on_capacity_change: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        in_flight_window_s: float = 30.0,
        lease_s: float = 60.0,
        capacity: Capacity | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.max_sessions = max_sessions
        self._on_capacity_change = on_capacity_change
        self._sessions: dict[str, SessionState] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._unclaimed_stops: OrderedDict[str, float] = OrderedDict()  # id -> when it came
        self._reserved = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._outcomes = SessionOutcomes(
            records=records,
            claims=claims,
            events=events,
            worker_id=worker_id,
            max_attempts=max_attempts,
            retry_delays_s=retry_delays_s,
            lease_s=lease_s,
            drop=self._drop,
            changed=self._changed,
        )
        self._lifecycle = SessionLifecycle(
            claims=claims,
            events=events,
            modes=modes,
            outcomes=self._outcomes,
            metrics=metrics,
            in_flight_window_s=in_flight_window_s,
            capacity=capacity,
        )

    # --- capacity -------------------------------------------------------------------------
    @property
    def taken(self) -> int:
        return self._reserved + len(self._sessions)

    @property
    def free(self) -> int:
        return max(self.max_sessions - self.taken, 0)

    def try_reserve(self) -> bool:
        """Take a slot for a job being looked at; False when the worker is full."""
        if self.taken >= self.max_sessions:
            return False
        self._reserved += 1
        self._idle.clear()
        return True

    def _unreserve(self) -> None:
        self._reserved -= 1
        self._changed()

    def _changed(self) -> None:
        if self.taken == 0:
            self._idle.set()
        self._on_capacity_change()

    def is_known(self, session_id: str) -> bool:
        """True when the session is live here or finished here recently (a duplicate)."""
        return session_id in self._sessions or session_id in self._finished

    def is_starting(self, session_id: str) -> bool:
        """True while the session is taken here but not yet `ready`."""
        state = self._sessions.get(session_id)
        return state is not None and state.live is None

    def is_live(self, session_id: str) -> bool:
        """True while the session runs (or starts) on this worker."""
        return session_id in self._sessions

    def sessions(self) -> list[SessionState]:
        return list(self._sessions.values())

    # --- one session ------------------------------------------------------------------------
    async def start(
        self, job: SessionJob, route: EventRoute, *, redelivered: bool = False
    ) -> JobResult:
        """Run a reserved job up to `ready` (or its end); the session then goes on in a task."""
        state = SessionState(job, route, redelivered=redelivered)
        if redelivered and self._unclaimed_stops.pop(job.session_id, None) is not None:
            state.request_stop("stopped")  # stopped while its dead worker's job was in transit
        self._sessions[job.session_id] = state
        self._reserved -= 1
        outcome: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        state.task = asyncio.create_task(
            self._lifecycle.run(state, outcome), name=f"session-{job.session_id}"
        )
        return await asyncio.shield(outcome)

    def adopt(self, record: SessionRecord, runner: SessionRunner, live: LiveSession) -> None:
        """Follow a live session whose worker died (its claim and `record` are this worker's
        already), to its one outcome, published with the job's metadata, reply_to and correlation id. Adoption
        does not wait for a free slot: a phoenix_rest session costs a worker next to nothing,
        and a call must not be cut for want of one."""
        assert record.job is not None
        route = EventRoute.from_record(record, worker_id=self.worker_id)
        route.adopted_from = record.adopted_from
        state = SessionState(
            record.job,
            route,
            started_at=time.monotonic() - record.age_s,
            phase=Phase.LIVE,
            live=live,
            runner=runner,
            record=record,
            holds_claim=True,  # the reaper took it for this worker
        )
        stopped_at = self._unclaimed_stops.pop(record.session_id, None)
        if stopped_at is not None:
            state.request_stop("stopped")
        self._sessions[record.session_id] = state
        self._idle.clear()
        log.info("session.adopted", session_id=record.session_id, adopted_from=record.adopted_from)
        state.task = asyncio.create_task(
            self._lifecycle.run_adopted(state), name=f"session-{record.session_id}"
        )
        self._on_capacity_change()

    def abandon(self, session_id: str) -> None:
        """Drop a session whose claim another worker took during a broker outage: that worker
        (or a reaper) now owns its resources and its outcome, so this copy releases nothing
        and publishes nothing."""
        state = self._sessions.get(session_id)
        if state is None:
            return
        log.warning("session.abandoned", session_id=session_id)
        state.advance(Phase.ABANDONED)
        state.route.is_silenced = True
        state.request_stop("worker_lost")

    def stop(self, session_id: str, reason: EndReason = "stopped") -> bool:
        """End a session of this worker; False when it is not here (harmless)."""
        state = self._sessions.get(session_id)
        if state is None:
            self._remember_unclaimed_stop(session_id)
            return False
        state.request_stop(reason)
        return True

    def was_stopped(self, session_id: str) -> bool:
        """True when a stop came for this session while no worker here ran it (kept
        UNCLAIMED_STOP_MEMORY_S): a reaper finishing it ends it `stopped`, as its user asked."""
        return session_id in self._unclaimed_stops

    def _remember_unclaimed_stop(self, session_id: str) -> None:
        now = time.monotonic()
        self._unclaimed_stops[session_id] = now
        self._unclaimed_stops.move_to_end(session_id)
        while self._unclaimed_stops:
            oldest, at = next(iter(self._unclaimed_stops.items()))
            if now - at < UNCLAIMED_STOP_MEMORY_S and len(self._unclaimed_stops) <= FINISHED_MEMORY:
                break
            del self._unclaimed_stops[oldest]

    def _drop(self, state: SessionState) -> None:
        """Take a session that is over out of the registry; remember it when it finished."""
        sid = state.job.session_id
        if self._sessions.get(sid) is state:  # not a duplicate start's: another state runs it
            del self._sessions[sid]
        if state.is_finished:
            self._finished[sid] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)

    def age_s(self, state: SessionState) -> float:
        """How long ago the session's job was taken."""
        return state.age_s

    # --- shutdown -----------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> None:
        """Let live sessions run up to `timeout_s`, then end the rest with `worker_shutdown`."""
        if self._sessions:
            log.info("worker.draining", live=len(self._sessions), timeout_s=timeout_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
        await self.end_all("worker_shutdown")

    async def end_all(self, reason: EndReason) -> None:
        states = list(self._sessions.values())
        for state in states:
            state.request_stop(reason)
        tasks = [s.task for s in states if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=RELEASE_TIMEOUT_S + 5)
