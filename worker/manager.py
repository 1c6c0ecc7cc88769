"""Live sessions of this worker: the registry, capacity (reservations), start, stop, abandon, drain.

`start()` returns what should happen to the job's delivery (an `Outcome`); acting on it is
`worker.intake`'s job. Every session that published `accepted` publishes exactly one `ended` or
`failed`, and its provider resources are released on every path (`worker.lifecycle`,
`worker.outcomes`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable

import structlog

from worker.claims import SessionClaims
from worker.contract import EndReason, SessionJob
from worker.events import EventPublisher, EventRoute
from worker.lifecycle import SessionLifecycle
from worker.modes import ModeResolver
from worker.ops.metrics import Metrics
from worker.outcomes import RELEASE_TIMEOUT_S, SessionOutcomes
from worker.records import SessionRecords
from worker.session_state import Outcome, SessionState

log = structlog.get_logger("worker.manager")

FINISHED_MEMORY = 10_000


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
    ) -> None:
        self.worker_id = worker_id
        self.max_sessions = max_sessions
        self._on_capacity_change = on_capacity_change
        self._sessions: dict[str, SessionState] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
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
    ) -> Outcome:
        """Run a reserved job up to `ready` (or its end); the session then goes on in a task."""
        state = SessionState(job, route, is_redelivered=redelivered)
        self._sessions[job.session_id] = state
        self._reserved -= 1
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        state.task = asyncio.create_task(
            self._lifecycle.run(state, outcome), name=f"session-{job.session_id}"
        )
        return await asyncio.shield(outcome)

    def abandon(self, session_id: str) -> None:
        """Drop a session whose claim another worker took during a broker outage: that worker
        (or a reaper) now owns its resources and its outcome, so this copy releases nothing
        and publishes nothing."""
        state = self._sessions.get(session_id)
        if state is None:
            return
        log.warning("session.abandoned", session_id=session_id)
        state.is_abandoned = True
        state.route.is_silenced = True
        state.request_stop("worker_lost")

    def stop(self, session_id: str, reason: EndReason = "stopped") -> bool:
        """End a session of this worker; False when it is not here (harmless)."""
        state = self._sessions.get(session_id)
        if state is None:
            return False
        state.request_stop(reason)
        return True

    def _drop(self, state: SessionState) -> None:
        """Take a session that is over out of the registry; remember it when it finished."""
        sid = state.job.session_id
        self._sessions.pop(sid, None)
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
