"""How a session ends: its one `ended` or `failed` (or a retry of its start), the record it keeps
on the broker until then (written before any provider call, carrying the outcome before it is
published), releasing its provider resources, and the bookkeeping once it is over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from tavus.errors import ProviderError
from worker.broker import BrokerError
from worker.contract import EventError, SessionJob
from worker.core.claims import SessionClaims
from worker.core.delivery import GaveUp, JobResult, RetryLater, Settled
from worker.core.events import EventPublisher, TerminalEvent
from worker.core.records import RecordFinished, SessionRecord, SessionRecords
from worker.core.state import Phase, SessionState
from worker.sessions.base import LiveSession, SessionFailure, SessionRunner

log = structlog.get_logger(__name__)

RELEASE_TIMEOUT_S = 30.0
# Publishing the last-resort `failed` event can hit the broker being away, or (a bug) an event
# that cannot be serialised (pydantic's error is a ValueError): log it, never raise from there.
FAILED_EVENT_ERRORS: tuple[type[BaseException], ...] = (BrokerError, ValueError)


def describe(exc: BaseException) -> str:
    """An error for a log line that always names what failed (a timeout's str() is empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SessionOutcomes:
    """Concludes sessions and keeps their records; `drop` and `changed` are the manager's
    registry (called as a session is forgotten, and once its bookkeeping is done)."""

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
        self.lease_s = lease_s
        self._drop = drop
        self._changed = changed

    async def start_failure(
        self, state: SessionState, runner: SessionRunner, exc: ProviderError | SessionFailure
    ) -> JobResult:
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
        if exc.retryable and route.attempt < self._max_attempts:
            delay = self.retry_delay_s(route.attempt, getattr(exc, "retry_after_s", None))
            await self._keep_record_for_retry(state, delay)
            await self._events.retrying(route, error, delay)
            return RetryLater(exc.code, delay)
        if exc.retryable:
            error = EventError(
                code=exc.code,
                retryable=False,
                message=f"{exc.message} (gave up after {route.attempt} attempts)",
            )
            await self.conclude(state, self._events.failed_event(route, error))
            return GaveUp(exc.code, route.attempt)
        await self.conclude(state, self._events.failed_event(route, error))
        return Settled(exc.code)

    async def open_record(self, session_id: str) -> SessionRecord | None:
        """The record an earlier attempt (or a finished session) left; None when there is none.
        Raises BrokerError when the broker would not say: then the start must not go on (the
        record's queue may not exist, and a record written into it would be lost)."""
        try:
            return await self._records.open(session_id)
        except BrokerError as exc:
            log.warning("session.record_unreadable", error=str(exc), action="requeue")
            raise

    async def recorded_before_provisioning(self, state: SessionState) -> bool:
        """Write the session's record; False when the broker would not take it. Then nothing is
        created at the providers and the job goes back: a worker that is cut off from the broker
        must not create what a worker taking the redelivered job cannot know to wait for (its
        in-flight wait and its lookup both start from this record), or the session would run
        twice."""
        record = self.new_record(state)
        try:
            await self._records.write(
                record, lease_s=self.lease_s, replace=state.earlier_record is not None
            )
        except BrokerError as exc:
            log.warning("session.record_failed", error=str(exc), action="requeue")
            return False
        state.record = record
        return True

    async def record_ready(self, state: SessionState) -> None:
        """Put the live conversation in the record, so another worker can adopt the session if
        this one dies (phoenix_rest). Best effort: without it, a dead worker's session ends as
        `worker_lost`, as before."""
        assert state.live is not None
        conversation_id = state.live.ready.conversation_id
        if state.record is None or conversation_id is None or state.route.mode != "phoenix_rest":
            return
        record = state.record.model_copy(update={"conversation_id": conversation_id})
        try:
            await self._records.write(record, lease_s=self.lease_s, replace=True)
            state.record = record
        except BrokerError as exc:
            log.warning("session.record_failed", error=str(exc), action="keep")

    def new_record(self, state: SessionState) -> SessionRecord:
        route = state.route
        return SessionRecord(
            session_id=route.session_id,
            attempt=route.attempt,
            metadata=route.metadata,
            reply_to=route.reply_to,
            correlation_id=route.correlation_id,
            mode=route.mode,
            worker_id=self.worker_id,
            started_at=time.time() - state.age_s,
            job=state.job,
            adopted_from=route.adopted_from,
        )

    def kept_record(self, state: SessionState) -> SessionRecord:
        """The session's record as this worker keeps it (made from the route when this attempt
        has not written its own yet)."""
        if state.record is None:
            state.record = self.new_record(state)
        return state.record

    async def _keep_record_for_retry(self, state: SessionState, delay_s: float) -> None:
        """Before a retry: lease the record past the retry delay, so that no reaper takes the
        session for lost while its next attempt waits in a delay queue (the lease would
        otherwise run out after WORKER_SESSION_LEASE_S, whatever the delay)."""
        if not state.is_recorded:
            return
        try:
            await self._records.write(
                self.kept_record(state), lease_s=delay_s + self.lease_s, replace=True
            )
        except BrokerError as exc:  # the retry still happens; a reaper may end it as lost
            log.warning("session.record_failed", error=str(exc))

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
        if state.is_outcome_out or state.is_abandoned:
            return  # its one outcome is out already, or it is another worker's now
        try:
            # An outcome decided already (its publishing is what broke) stays the outcome.
            event = state.outcome or self._events.failed_event(
                state.route, EventError(code=code, message=message, retryable=retryable)
            )
            await self.conclude(state, event)
        except FAILED_EVENT_ERRORS as exc:
            state.advance(Phase.CONCLUDED)
            log.error("session.failed_event_lost", error=describe(exc))

    async def conclude(self, state: SessionState, event: TerminalEvent) -> None:
        """Publish the session's one outcome (`ended` or `failed`). It goes into the session's
        record first (one record write): a worker that dies between publishing it and
        `finish` in `forget` leaves a record from which a reaper republishes this very
        event, not a second outcome. A session another worker owns now (abandoned)
        writes and publishes nothing."""
        state.advance(Phase.CONCLUDED)
        state.outcome = event
        route = state.route
        if state.is_recorded and not route.is_silenced:
            # An earlier attempt's record counts too: left as it is, its lease would run out
            # and a reaper would add `worker_lost` to this attempt's outcome.
            record = self.kept_record(state).model_copy(update={"outcome": event})
            try:
                await self._records.write_outcome(record, lease_s=self.lease_s)
            except RecordFinished:  # another worker took it over and published its outcome
                log.info("session.finished_elsewhere", status=event.status)
                return
            except BrokerError as exc:  # the running record stays: a reaper says worker_lost
                log.warning("session.outcome_record_failed", error=str(exc))
        if await self._events.publish(route, event):
            state.advance(Phase.PUBLISHED)

    async def release(self, live: LiveSession) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(live.release(), RELEASE_TIMEOUT_S))
        except (ProviderError, TimeoutError) as exc:
            log.error("session.release_failed", error=describe(exc))

    async def cleanup(self, runner: SessionRunner, job: SessionJob) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(runner.cleanup(job), RELEASE_TIMEOUT_S))
        except (ProviderError, TimeoutError) as exc:
            log.error("session.cleanup_failed", error=describe(exc))

    async def forget(self, state: SessionState) -> None:
        if state.forgotten:
            return
        state.forgotten = True
        if state.slot is not None:
            state.slot.release()
        sid = state.job.session_id
        self._drop(state)
        try:
            # Only an outcome this worker published: otherwise the record (with the outcome,
            # if it got there) lapses and a reaper publishes it.
            if state.is_outcome_out and state.is_recorded:
                await self._records.finish(self.kept_record(state))
            if state.holds_claim:  # not a duplicate start's: the claim is another holder's
                await self._claims.release(sid)
        except BrokerError as exc:
            log.warning("session.bookkeeping_failed", error=str(exc))
        structlog.contextvars.clear_contextvars()
        self._changed()
