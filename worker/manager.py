"""Live sessions of this worker: capacity, each session's lifecycle and events, stop and drain.

`start()` returns what should happen to the job's delivery (an `Outcome`); acting on it is
`worker.intake`'s job. Every session that published `accepted` publishes exactly one `ended` or
`failed`, and its provider resources are released on every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from tavus.errors import ProviderError
from worker.broker import BROKER_ERRORS, Broker
from worker.contract import EndReason, EventError, SessionJob
from worker.events import EventPublisher, EventRoute, TerminalEvent
from worker.modes import ModeResolver, Resolution
from worker.ops.metrics import Metrics
from worker.sessions.base import Existing, LiveSession, SessionFailure, SessionRunner

log = structlog.get_logger("worker.manager")

RELEASE_TIMEOUT_S = 30.0
# Publishing the last-resort `failed` event can hit the broker being away, or (a bug) an event
# that cannot be serialised (pydantic's error is a ValueError): log it, never raise from there.
FAILED_EVENT_ERRORS: tuple[type[BaseException], ...] = (*BROKER_ERRORS, ValueError)
FINISHED_MEMORY = 10_000

Action = Literal["ack", "requeue", "retry", "dead_letter"]


@dataclass(frozen=True)
class Outcome:
    """What to do with the job's delivery once the session is ready or has failed to start."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""
    dead_letter_kind: Literal["invalid_job", "exhausted", "internal"] = "exhausted"


@dataclass
class SessionState:
    job: SessionJob
    route: EventRoute
    started_at: float = field(default_factory=time.monotonic)
    stop_reason: EndReason | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    live: LiveSession | None = None
    runner: SessionRunner | None = None
    task: asyncio.Task[None] | None = None
    is_finished: bool = False  # reached its one outcome: a later copy of the job is a duplicate
    is_forgotten: bool = False
    has_record: bool = False
    had_record: bool = False  # an earlier attempt's note was there when this one started
    record: dict[str, Any] = field(default_factory=dict)
    is_abandoned: bool = False  # another worker owns it now: drop it without a word
    outcome: TerminalEvent | None = None  # its `ended` or `failed`, once decided
    is_outcome_out: bool = False  # this worker published it (confirmed)
    is_redelivered: bool = False  # RabbitMQ gave it back after a consumer vanished

    def request_stop(self, reason: EndReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_requested.set()


class _StopDuringStart(Exception):
    pass


class SessionManager:
    """Owns the live sessions and the capacity of this worker process."""

    def __init__(
        self,
        *,
        broker: Broker,
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
        self._lease_s = lease_s
        self._metrics = metrics
        self._in_flight_window_s = in_flight_window_s
        self._broker = broker
        self._events = events
        self._modes = modes
        self.worker_id = worker_id
        self.max_sessions = max_sessions
        self._max_attempts = max_attempts
        self._retry_delays_s = retry_delays_s
        self._on_capacity_change = on_capacity_change
        self._sessions: dict[str, SessionState] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._reserved = 0
        self._idle = asyncio.Event()
        self._idle.set()

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
            self._lifecycle(state, outcome), name=f"session-{job.session_id}"
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

    async def _lifecycle(self, state: SessionState, outcome: asyncio.Future[Outcome]) -> None:
        job, route = state.job, state.route
        structlog.contextvars.bind_contextvars(session_id=job.session_id, attempt=route.attempt)
        try:
            result = await self._begin(state)
            if result is not None:
                # Bookkeeping first: a retried job may come straight back to this worker.
                await self._forget(state)
                outcome.set_result(result)
                return
            outcome.set_result(Outcome("ack"))
            await self._follow(state)
        except asyncio.CancelledError:
            if not outcome.done():
                outcome.set_result(Outcome("requeue", reason="worker stopping"))
            raise
        except Exception as exc:  # the task must never die silently: a bug becomes `failed`
            log.exception("session.crashed", error=type(exc).__name__)
            crash = Outcome(
                "dead_letter",
                reason=f"internal error: {type(exc).__name__}",
                dead_letter_kind="internal",
            )
            try:
                await self._fail(
                    state,
                    "internal_error",
                    f"the worker hit an internal error ({type(exc).__name__}); see the worker logs",
                    retryable=False,
                )
            finally:  # whatever `_fail` ran into, the delivery is settled and the slot freed
                await self._forget(state)
                if not outcome.done():
                    outcome.set_result(crash)
        finally:
            await self._forget(state)

    async def _begin(self, state: SessionState) -> Outcome | None:
        """Admit, provision and publish `ready`; an Outcome when it stops early."""
        admitted = await self._admit(state)
        if isinstance(admitted, Outcome):
            return admitted
        resolution, existing = admitted
        job, route, runner = state.job, state.route, resolution.runner
        state.runner = runner
        # `accepted` and the session's note go out together (one broker round trip less on every
        # start). The note is confirmed before any provider call: once anything can exist at
        # the providers, a reaper can find it. `accepted` is confirmed before any later event.
        accepted = asyncio.create_task(self._events.accepted(route))
        try:
            if not await self._noted_before_provisioning(state):
                accepted.cancel()
                return Outcome("requeue", reason="broker unavailable: no session note")
            state.live, fallback_reason = await self._provision(state, resolution, existing)
        except _StopDuringStart:
            await accepted
            if state.is_abandoned:
                return Outcome("requeue", reason="abandoned: another worker owns it")
            await self._cleanup(state.runner, job)
            reason = state.stop_reason or "stopped"
            await self._conclude(state, self._events.ended_event(route, reason, self._age(state)))
            return Outcome("ack", reason="stopped while starting")
        except (ProviderError, SessionFailure) as exc:
            await accepted
            return await self._start_failure(state, state.runner, exc)
        except asyncio.CancelledError:
            accepted.cancel()
            raise
        except Exception:
            with contextlib.suppress(Exception):  # the crash path publishes `failed` after it
                await accepted
            raise
        await accepted
        ready = state.live.ready
        if self._metrics is not None:
            self._metrics.observe_ready_latency(
                route.mode or "unknown", self._age(state), ready.cold_start
            )
        await self._events.ready(
            route,
            room_url=ready.room_url,
            user_token=ready.user_token,
            conversation_id=ready.conversation_id,
            conversation_url=ready.conversation_url,
            fallback_reason=fallback_reason,
        )
        return None

    async def _admit(self, state: SessionState) -> Outcome | tuple[Resolution, Existing | None]:
        """Claim, resolve the mode, dedupe and check expiry: what is known before `accepted`."""
        job, route = state.job, state.route
        try:
            if not await self._broker.claim(job.session_id):
                log.info("session.duplicate_live_elsewhere")
                return Outcome("ack", reason="duplicate: live on another worker")
        except BROKER_ERRORS as exc:  # nothing started: RabbitMQ gives the job back
            log.warning("session.broker_unavailable", error=type(exc).__name__)
            return Outcome("requeue", reason="broker unavailable")
        try:
            resolution = self._modes.resolve(job.mode)
        except SessionFailure as exc:
            state.is_finished = True
            await self._events.failed(
                route, EventError(code=exc.code, message=exc.message, retryable=False)
            )
            return Outcome("ack", reason=exc.code)
        route.mode = resolution.mode
        structlog.contextvars.bind_contextvars(mode=resolution.mode)
        record = await self._read_record(job.session_id)
        state.had_record = record is not None
        if record is not None and (record.get("finished") or record.get("outcome")):
            # An outcome in the note: a worker decided it and published it or died trying (then
            # a reaper republishes it when the note's lease runs out).
            state.is_finished = True
            log.info("session.duplicate_finished", source="record")
            return Outcome("ack", reason="duplicate: session already finished")
        if record is None and not state.is_redelivered:
            # A first delivery with no note on the broker: no worker ever got to create anything
            # for it (the note is written before any conversation can exist, and a copy taken by
            # a worker that died comes back redelivered), so there is nothing to look up.
            existing = None
        else:
            try:
                existing = await self._lookup(state, resolution, record)
            except ProviderError as exc:
                return await self._start_failure(state, resolution.runner, exc)
        if existing is not None and existing.finished:
            state.is_finished = True
            log.info("session.duplicate_finished")
            return Outcome("ack", reason="duplicate: session already finished")
        if job.not_after is not None and job.is_expired():
            state.is_finished = True
            await self._events.expired(route, job.not_after)
            return Outcome("ack", reason="expired")
        return resolution, existing

    async def _lookup(
        self, state: SessionState, resolution: Resolution, record: dict[str, Any] | None
    ) -> Existing | None:
        existing = await resolution.runner.lookup(state.job)
        if (
            existing is None
            and state.is_redelivered
            and await self._may_have_create_in_flight(state, record)
        ):
            existing = await resolution.runner.lookup(state.job)
        return existing

    async def _provision(
        self, state: SessionState, resolution: Resolution, existing: Existing | None
    ) -> tuple[LiveSession, str | None]:
        """Start with the resolved runner; in `auto`, a Daily outage falls back to phoenix_rest."""
        assert state.runner is not None
        try:
            return await self._start_unless_stopped(state, state.runner, existing), (
                resolution.fallback_reason
            )
        except ProviderError as exc:
            if not (resolution.fallback and exc.provider == "daily" and exc.retryable):
                raise
            reason = f"Daily is unavailable ({exc.message}); this session runs as phoenix_rest"
            log.warning("session.fallback", error=exc.message, code=exc.code)
            await self._cleanup(state.runner, state.job)
            state.runner = resolution.fallback
            state.route.mode = resolution.fallback.mode
            structlog.contextvars.bind_contextvars(mode=resolution.fallback.mode)
            fallback_existing = await resolution.fallback.lookup(state.job)
            live = await self._start_unless_stopped(state, resolution.fallback, fallback_existing)
            return live, reason

    async def _start_unless_stopped(
        self, state: SessionState, runner: SessionRunner, existing: Existing | None
    ) -> LiveSession:
        start = asyncio.create_task(runner.start(state.job, existing))
        stop = asyncio.create_task(state.stop_requested.wait())
        try:
            done, _ = await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if start in done:
            return start.result()
        start.cancel()
        try:
            live = await start
        except (asyncio.CancelledError, ProviderError, SessionFailure) as exc:
            log.info("session.start_interrupted", error=type(exc).__name__)
        else:
            if state.is_abandoned:
                await live.abandon()
            else:
                await self._release(live)
        raise _StopDuringStart

    async def _follow(self, state: SessionState) -> None:
        """Wait for the end (provider, stop, max duration), release, publish `ended`."""
        assert state.live is not None
        live, job = state.live, state.job
        provider_end = asyncio.create_task(live.wait_end())
        stop = asyncio.create_task(state.stop_requested.wait())
        remaining_s = max(job.max_duration_s - self._age(state), 0)
        try:
            done, _ = await asyncio.wait(
                {provider_end, stop}, timeout=remaining_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            if not provider_end.done():
                provider_end.cancel()
        if state.is_abandoned:
            await live.abandon()
            return
        broke = provider_end.exception() if provider_end in done else None
        if isinstance(broke, SessionFailure):  # e.g. the session's process crashed
            await self._release(live)
            error = EventError(code=broke.code, message=broke.message, retryable=broke.retryable)
            await self._conclude(state, self._events.failed_event(state.route, error))
            return
        if broke is not None:
            raise broke
        reason: EndReason
        if provider_end in done:
            reason = provider_end.result()
        elif stop in done or state.stop_reason is not None:
            reason = state.stop_reason or "stopped"
        else:
            reason = "max_duration"
        await self._release(live)
        await self._conclude(state, self._events.ended_event(state.route, reason, self._age(state)))

    async def _start_failure(
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
        await self._cleanup(runner, job)
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
            await self._conclude(state, self._events.failed_event(route, error))
            return Outcome("dead_letter", reason=f"{exc.code} after {route.attempt} attempts")
        await self._conclude(state, self._events.failed_event(route, error))
        return Outcome("ack", reason=exc.code)

    async def _read_record(self, session_id: str) -> dict[str, Any] | None:
        try:
            return await self._broker.open_record(session_id)
        except BROKER_ERRORS as exc:
            log.warning("session.record_unreadable", error=type(exc).__name__)
            return None

    async def _may_have_create_in_flight(
        self, state: SessionState, record: dict[str, Any] | None
    ) -> bool:
        """For a job redelivered after its worker vanished mid-start: wait until a provider call
        that worker left in flight can no longer land, so the session is adopted, not doubled.

        True when it waited (look again). A retry (a later attempt) never waits: its previous
        attempt cleaned up after itself.
        """
        if record is None or int(record.get("attempt") or 0) != state.route.attempt:
            return False
        remaining_s = float(record.get("started_at") or 0) + self._in_flight_window_s - time.time()
        if remaining_s <= 0:
            return False
        log.info("session.waiting_for_in_flight_start", wait_s=round(remaining_s, 2))
        await asyncio.sleep(remaining_s)
        return True

    async def _noted_before_provisioning(self, state: SessionState) -> bool:
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
        await self._broker.write_record(
            route.session_id, state.record, lease_s=self._lease_s, replace=state.had_record
        )
        state.has_record = True

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
            "started_at": time.time() - self._age(state),
        }

    @staticmethod
    def _noted(state: SessionState) -> bool:
        """A note of this session is on the broker: this attempt's, or an earlier one's."""
        return state.has_record or state.had_record

    async def _keep_note_for_retry(self, state: SessionState, delay_s: float) -> None:
        """Before a retry: lease the note past the retry delay, so that no reaper takes the
        session for lost while its next attempt waits in a delay queue (the lease would
        otherwise run out after WORKER_SESSION_LEASE_S, whatever the delay)."""
        if not self._noted(state):
            return
        state.record = state.record or self._note(state)
        try:
            await self._broker.write_record(
                state.route.session_id,
                state.record,
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

    async def _fail(self, state: SessionState, code: str, message: str, *, retryable: bool) -> None:
        if state.live is not None:
            await self._release(state.live)
        state.is_finished = True
        if state.is_outcome_out:
            return  # its one outcome is out already
        try:
            # An outcome decided already (its publishing is what broke) stays the outcome.
            event = state.outcome or self._events.failed_event(
                state.route, EventError(code=code, message=message, retryable=retryable)
            )
            await self._conclude(state, event)
        except FAILED_EVENT_ERRORS as exc:
            log.error("session.failed_event_lost", error=type(exc).__name__)

    async def _conclude(self, state: SessionState, event: TerminalEvent) -> None:
        """Publish the session's one outcome (`ended` or `failed`). It goes into the session's
        note first (one record write): a worker that dies between publishing it and
        `finish_record` in `_forget` leaves a note from which a reaper republishes this very
        event, not a second outcome (F12). A session another worker owns now (abandoned)
        writes and publishes nothing."""
        state.is_finished = True
        state.outcome = event
        route = state.route
        if self._noted(state) and not route.is_silenced:
            # An earlier attempt's note counts too: left as it is, its lease would run out and
            # a reaper would add `worker_lost` to this attempt's outcome.
            state.record = state.record or self._note(state)
            note = {**state.record, "outcome": event.model_dump(mode="json")}
            try:
                await self._broker.write_outcome(route.session_id, note, lease_s=self._lease_s)
            except BROKER_ERRORS as exc:  # the running note stays: a reaper would say worker_lost
                log.warning("session.outcome_note_failed", error=type(exc).__name__)
        state.is_outcome_out = await self._events.publish(route, event)

    async def _release(self, live: LiveSession) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(live.release(), RELEASE_TIMEOUT_S))
        except (ProviderError, TimeoutError) as exc:
            log.error("session.release_failed", error=str(exc))

    async def _cleanup(self, runner: SessionRunner, job: SessionJob) -> None:
        try:
            await asyncio.shield(asyncio.wait_for(runner.cleanup(job), RELEASE_TIMEOUT_S))
        except (ProviderError, TimeoutError) as exc:
            log.error("session.cleanup_failed", error=str(exc))

    async def _forget(self, state: SessionState) -> None:
        if state.is_forgotten:
            return
        state.is_forgotten = True
        sid = state.job.session_id
        self._sessions.pop(sid, None)
        if state.is_finished:
            self._finished[sid] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)
        try:
            # Only an outcome this worker published: otherwise the note (with the outcome, if it
            # got there) lapses and a reaper publishes it.
            if state.is_outcome_out and self._noted(state):
                await self._broker.finish_record(sid, state.record or self._note(state))
            await self._broker.release_claim(sid)
        except BROKER_ERRORS as exc:
            log.warning("session.bookkeeping_failed", error=type(exc).__name__)
        structlog.contextvars.clear_contextvars()
        self._changed()

    @staticmethod
    def _age(state: SessionState) -> float:
        return time.monotonic() - state.started_at

    def age_s(self, state: SessionState) -> float:
        """How long ago the session's job was taken."""
        return self._age(state)

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
