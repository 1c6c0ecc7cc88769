"""How a session ends: its one `ended` or `failed` (or a retry of its start), the note it keeps on
the broker until then (written before any provider call, carrying the outcome before it is
published: F9, F12), releasing its provider resources, and the bookkeeping once it is over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from tavus.errors import ProviderError
from worker.broker import BROKER_ERRORS
from worker.claims import SessionClaims
from worker.contract import EventError, SessionJob
from worker.events import EventPublisher, TerminalEvent
from worker.records import SessionRecords
from worker.session_state import Outcome, SessionState
from worker.sessions.base import LiveSession, SessionFailure, SessionRunner

# The logger (and event names) of the time this lived in worker.manager: log queries keep working.
log = structlog.get_logger("worker.manager")

RELEASE_TIMEOUT_S = 30.0
# Publishing the last-resort `failed` event can hit the broker being away, or (a bug) an event
# that cannot be serialised (pydantic's error is a ValueError): log it, never raise from there.
FAILED_EVENT_ERRORS: tuple[type[BaseException], ...] = (*BROKER_ERRORS, ValueError)


class SessionOutcomes:
    """Concludes sessions and keeps their notes; `drop` and `changed` are the manager's registry
    (called as a session is forgotten, and once its bookkeeping is done)."""

    def __init__(
        self,
        *,
        records: SessionRecords,
        claims: SessionClaims,
        events: EventPublisher,
        worker_id: str,
        max_attempts: int,
        retry_delays_s: list[float],
        lease_s: float,
        drop: Callable[[SessionState], None],
        changed: Callable[[], None],
    ) -> None:
        self._records = records
        self._claims = claims
        self._events = events
        self.worker_id = worker_id
        self._max_attempts = max_attempts
        self._retry_delays_s = retry_delays_s
        self._lease_s = lease_s
        self._drop = drop
        self._changed = changed

    async def start_failure(
        self, state: SessionState, runner: SessionRunner, exc: ProviderError | SessionFailure
    ) -> Outcome:
        """Clean up after a start that failed; retry it later when the failure is transient."""
        job, route = state.job, state.route
        log.warning(
            "session.start_failed",
            code=exc.code,
            error=exc.message,
            status=getattr(exc, "status", None),
            retryable=exc.retryable,
        )
        await self.cleanup(runner, job)
        error = EventError(code=exc.code, message=exc.message, retryable=exc.retryable)
        state.is_finished = not exc.retryable or route.attempt >= self._max_attempts
        if exc.retryable and route.attempt < self._max_attempts:
            delay = self.retry_delay_s(route.attempt, getattr(exc, "retry_after_s", None))
            await self._keep_note_for_retry(state, delay)
            await self._events.retrying(route, error, delay)
            return Outcome("retry", delay_s=delay, reason=exc.code)
        if exc.retryable:
            error = EventError(
                code=exc.code,
                retryable=False,
                message=f"{exc.message} (gave up after {route.attempt} attempts)",
            )
            await self.conclude(state, self._events.failed_event(route, error))
            return Outcome("dead_letter", reason=f"{exc.code} after {route.attempt} attempts")
        await self.conclude(state, self._events.failed_event(route, error))
        return Outcome("ack", reason=exc.code)

    async def read_record(self, session_id: str) -> dict[str, Any] | None:
        try:
            return await self._records.open(session_id)
        except BROKER_ERRORS as exc:
            log.warning("session.record_unreadable", error=type(exc).__name__)
            return None

    async def noted_before_provisioning(self, state: SessionState) -> bool:
        """Write the session's note; False when the broker would not take it. Then nothing is
        created at the providers and the job goes back: a worker that is cut off from the broker
        must not create what a worker taking the redelivered job cannot know to wait for (its
        in-flight wait and its lookup both start from this note), or the session would run
        twice (F9)."""
        try:
            await self._write_record(state)
        except BROKER_ERRORS as exc:
            log.warning("session.record_failed", error=type(exc).__name__, action="requeue")
            return False
        return True

    async def _write_record(self, state: SessionState) -> None:
        """The note a reaper needs to finish this session if this worker dies (its event route)."""
        route = state.route
        state.record = self._note(state)
        await self._records.write(
            route.session_id, state.record, lease_s=self._lease_s, replace=state.had_record
        )
        state.has_record = True

    def _kept_note(self, state: SessionState) -> dict[str, Any]:
        """The session's note as this worker keeps it (made from the route when this attempt
        has not written its own yet)."""
        if not state.record:
            state.record = self._note(state)
        return state.record

    def _note(self, state: SessionState) -> dict[str, Any]:
        route = state.route
        return {
            "session_id": route.session_id,
            "attempt": route.attempt,
            "metadata": route.metadata,
            "reply_to": route.reply_to,
            "correlation_id": route.correlation_id,
            "mode": route.mode,
            "worker_id": self.worker_id,
            "started_at": time.time() - state.age_s,
        }

    async def _keep_note_for_retry(self, state: SessionState, delay_s: float) -> None:
        """Before a retry: lease the note past the retry delay, so that no reaper takes the
        session for lost while its next attempt waits in a delay queue (the lease would
        otherwise run out after WORKER_SESSION_LEASE_S, whatever the delay)."""
        if not state.is_noted:
            return
        try:
            await self._records.write(
                state.route.session_id,
                self._kept_note(state),
                lease_s=delay_s + self._lease_s,
                replace=True,
            )
        except BROKER_ERRORS as exc:  # the retry still happens; a reaper may end it as lost
            log.warning("session.record_failed", error=type(exc).__name__)

    def retry_delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """The backoff step for the next attempt (the smallest one covering Retry-After)."""
        delays = sorted(self._retry_delays_s)
        delay = delays[min(attempt - 1, len(delays) - 1)]
        if retry_after_s:
            delay = next((d for d in delays if d >= retry_after_s), delays[-1])
        return delay

    async def fail(self, state: SessionState, code: str, message: str, *, retryable: bool) -> None:
        if state.live is not None:
            await self.release(state.live)
        state.is_finished = True
        if state.is_outcome_out:
            return  # its one outcome is out already
        try:
            # An outcome decided already (its publishing is what broke) stays the outcome.
            event = state.outcome or self._events.failed_event(
                state.route, EventError(code=code, message=message, retryable=retryable)
            )
            await self.conclude(state, event)
        except FAILED_EVENT_ERRORS as exc:
            log.error("session.failed_event_lost", error=type(exc).__name__)

    async def conclude(self, state: SessionState, event: TerminalEvent) -> None:
        """Publish the session's one outcome (`ended` or `failed`). It goes into the session's
        note first (one record write): a worker that dies between publishing it and
        `finish` in `forget` leaves a note from which a reaper republishes this very
        event, not a second outcome (F12). A session another worker owns now (abandoned)
        writes and publishes nothing."""
        state.is_finished = True
        state.outcome = event
        route = state.route
        if state.is_noted and not route.is_silenced:
            # An earlier attempt's note counts too: left as it is, its lease would run out and
            # a reaper would add `worker_lost` to this attempt's outcome.
            note = {**self._kept_note(state), "outcome": event.model_dump(mode="json")}
            try:
                await self._records.write_outcome(route.session_id, note, lease_s=self._lease_s)
            except BROKER_ERRORS as exc:  # the running note stays: a reaper would say worker_lost
                log.warning("session.outcome_note_failed", error=type(exc).__name__)
        state.is_outcome_out = await self._events.publish(route, event)

    async def release(self, live: LiveSession) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(live.release(), RELEASE_TIMEOUT_S))
        except (ProviderError, TimeoutError) as exc:
            log.error("session.release_failed", error=str(exc))

    async def cleanup(self, runner: SessionRunner, job: SessionJob) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(runner.cleanup(job), RELEASE_TIMEOUT_S))
        except (ProviderError, TimeoutError) as exc:
            log.error("session.cleanup_failed", error=str(exc))

    async def forget(self, state: SessionState) -> None:
        if state.is_forgotten:
            return
        state.is_forgotten = True
        sid = state.job.session_id
        self._drop(state)
        try:
            # Only an outcome this worker published: otherwise the note (with the outcome, if it
            # got there) lapses and a reaper publishes it.
            if state.is_outcome_out and state.is_noted:
                await self._records.finish(sid, self._kept_note(state))
            await self._claims.release(sid)
        except BROKER_ERRORS as exc:
            log.warning("session.bookkeeping_failed", error=type(exc).__name__)
        structlog.contextvars.clear_contextvars()
        self._changed()
