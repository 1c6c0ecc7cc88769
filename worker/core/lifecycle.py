"""One session's life on this worker, from its job to its end: admit (claim, mode, dedupe against
its note and the providers, expiry), provision (with `auto`'s fallback), publish `ready`, follow
it until it ends. How it ends (outcome, note, release, bookkeeping) is `worker.core.outcomes`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from tavus.errors import ProviderError
from worker.breaker import is_daily_outage
from worker.broker import BrokerError
from worker.contract import EndReason, EventError, Transcript
from worker.core.claims import SessionClaims
from worker.core.delivery import Crashed, Deferred, JobResult, NotNow, Settled, Started
from worker.core.events import EventPublisher
from worker.core.outcomes import SessionOutcomes, describe
from worker.core.records import SessionRecord
from worker.core.state import Phase, SessionState, StopDuringStart
from worker.modes import ModeResolver, Resolution
from worker.ops.capacity import Capacity
from worker.ops.metrics import Metrics
from worker.sessions.base import Existing, LiveSession, SessionFailure, SessionRunner

log = structlog.get_logger(__name__)


class SessionLifecycle:
    """Runs each session's task: `run` settles what became of its job (a `JobResult`) once it is
    ready (or over), then follows it to its end. `run_adopted` follows a live session adopted
    from a worker that died."""

    def __init__(
        self,
        *,
        claims: SessionClaims,
        events: EventPublisher,
        modes: ModeResolver,
        outcomes: SessionOutcomes,
        metrics: Metrics | None,
        in_flight_window_s: float,
        capacity: Capacity | None = None,
    ) -> None:
        self._capacity = capacity
        self._claims = claims
        self._events = events
        self._modes = modes
        self._outcomes = outcomes
        self._metrics = metrics
        self._in_flight_window_s = in_flight_window_s

    async def run(self, state: SessionState, outcome: asyncio.Future[JobResult]) -> None:
        job, route = state.job, state.route
        structlog.contextvars.bind_contextvars(session_id=job.session_id, attempt=route.attempt)
        try:
            result = await self._begin(state)
            if result is not None:
                # Bookkeeping first: a retried job may come straight back to this worker.
                await self._outcomes.forget(state)
                outcome.set_result(result)
                return
            outcome.set_result(Started())
            await self._follow(state)
        except asyncio.CancelledError:
            if not outcome.done():
                outcome.set_result(NotNow("worker stopping"))
            raise
        except Exception as exc:  # the task must never die silently: a bug becomes `failed`
            log.exception("session.crashed", error=type(exc).__name__)
            crash = Crashed(type(exc).__name__)
            try:
                await self._outcomes.fail(
                    state,
                    "internal_error",
                    f"the worker hit an internal error ({type(exc).__name__}); see the worker logs",
                    retryable=False,
                )
            finally:  # whatever `fail` ran into, the delivery is settled and the slot freed
                await self._outcomes.forget(state)
                if not outcome.done():
                    outcome.set_result(crash)
        finally:
            await self._outcomes.forget(state)

    async def run_adopted(self, state: SessionState) -> None:
        """Follow a live session adopted from a worker that died, to its one outcome."""
        structlog.contextvars.bind_contextvars(
            session_id=state.job.session_id, attempt=state.route.attempt, adopted=True
        )
        try:
            if state.stop_reason is not None:  # a stop came while nobody followed it
                assert state.live is not None
                await self._outcomes.release(state.live)
                transcript = await self._transcript(state)
                await self._outcomes.conclude(
                    state,
                    self._events.ended_event(
                        state.route, state.stop_reason, state.age_s, transcript
                    ),
                )
                return
            await self._follow(state)
        except Exception as exc:
            log.exception("session.crashed", error=type(exc).__name__)
            await self._outcomes.fail(
                state,
                "internal_error",
                f"the worker hit an internal error ({type(exc).__name__}); see the worker logs",
                retryable=False,
            )
        finally:
            await self._outcomes.forget(state)

    async def _begin(self, state: SessionState) -> JobResult | None:
        """Admit, provision and publish `ready`; a JobResult when it stops early."""
        admitted = await self._admit(state)
        if not isinstance(admitted, tuple):
            return admitted
        resolution, existing = admitted
        job, route, runner = state.job, state.route, resolution.runner
        state.runner = runner
        # `accepted` and the session's note go out together (one broker round trip less on every
        # start). The note is confirmed before any provider call: once anything can exist at
        # the providers, a reaper can find it. `accepted` is confirmed before any later event.
        accepted = asyncio.create_task(self._events.accepted(route))
        try:
            # Still ours? A broker outage since the claim (a redelivered job's in-flight wait or
            # lookup can be long) may have let another worker take the session over: once the
            # claims are taken back, write and create nothing for a session that is not ours.
            await self._claims.settled()
            if state.is_abandoned or not self._claims.holds(job.session_id):
                accepted.cancel()
                log.info("session.taken_over_before_provisioning")
                return NotNow("abandoned: another worker owns it")
            if not await self._outcomes.recorded_before_provisioning(state):
                accepted.cancel()
                return NotNow("broker unavailable: no session record")
            state.live, fallback_reason = await self._provision(state, resolution, existing)
        except StopDuringStart:
            await accepted
            if state.is_abandoned:
                return NotNow("abandoned: another worker owns it")
            await self._outcomes.cleanup(state.runner, job)
            reason = state.stop_reason or "stopped"
            await self._outcomes.conclude(
                state, self._events.ended_event(route, reason, state.age_s)
            )
            return Settled("stopped while starting")
        except (ProviderError, SessionFailure) as exc:
            await accepted
            return await self._outcomes.start_failure(state, state.runner, exc)
        except asyncio.CancelledError:
            accepted.cancel()
            raise
        except Exception:
            with contextlib.suppress(Exception):  # the crash path publishes `failed` after it
                await accepted
            raise
        await accepted
        state.advance(Phase.LIVE)
        ready = state.live.ready
        if self._metrics is not None:
            self._metrics.observe_ready_latency(
                route.mode or "unknown", state.age_s, ready.cold_start
            )
        await self._events.ready(
            route,
            room_url=ready.room_url,
            user_token=ready.user_token,
            conversation_id=ready.conversation_id,
            conversation_url=ready.conversation_url,
            fallback_reason=fallback_reason,
        )
        await self._outcomes.record_ready(state)
        return None

    async def _admit(self, state: SessionState) -> JobResult | tuple[Resolution, Existing | None]:
        """Claim, resolve the mode, dedupe and check expiry: what is known before `accepted`."""
        job, route = state.job, state.route
        try:
            if not await self._claims.claim(job.session_id):
                log.info("session.duplicate_live_elsewhere")
                return Settled("duplicate: live on another worker or taken over here")
            state.holds_claim = True
        except BrokerError as exc:  # nothing started: RabbitMQ gives the job back
            log.warning("session.broker_unavailable", error=str(exc))
            return NotNow("broker unavailable")
        try:
            resolution = self._modes.resolve(job.mode)
        except SessionFailure as exc:
            state.advance(Phase.CONCLUDED)
            await self._events.failed(
                route, EventError(code=exc.code, message=exc.message, retryable=False)
            )
            return Settled(exc.code)
        placed = self._place(state, resolution)
        if not isinstance(placed, Resolution):
            return placed
        resolution = placed
        route.mode = resolution.mode
        structlog.contextvars.bind_contextvars(mode=resolution.mode)
        try:
            record = await self._outcomes.open_record(job.session_id)
        except BrokerError:  # nothing started: RabbitMQ gives the job back
            return NotNow("broker unavailable: the session record could not be opened")
        state.earlier_record = record
        if record is not None and record.is_concluded:
            # An outcome in the record: a worker decided it and published it or died trying
            # (then a reaper republishes it when the record's lease runs out).
            state.advance(Phase.CONCLUDED)
            log.info("session.duplicate_finished", source="record")
            return Settled("duplicate: session already finished")
        if record is None and not state.redelivered:
            # A first delivery with no record on the broker: no worker ever got to create
            # anything for it (the record is written before any conversation can exist, and a
            # copy taken by a worker that died comes back redelivered): nothing to look up.
            existing = None
        else:
            try:
                existing = await self._lookup(state, resolution, record)
            except ProviderError as exc:
                return await self._outcomes.start_failure(state, resolution.runner, exc)
        if existing is not None and existing.finished:
            state.advance(Phase.CONCLUDED)
            log.info("session.duplicate_finished")
            return Settled("duplicate: session already finished")
        if job.not_after is not None and job.is_expired():
            state.advance(Phase.CONCLUDED)
            await self._events.expired(route, job.not_after)
            return Settled("expired")
        return resolution, existing

    def _place(self, state: SessionState, resolution: Resolution) -> Resolution | JobResult:
        """Take the session's slot in its mode. Where pipecat_daily has no room on this worker
        (its slots are full, or the load gate is closed), an `auto` job runs as phoenix_rest,
        saying why, and an explicit pipecat_daily job waits for a worker with room."""
        if self._capacity is None:
            return resolution
        if resolution.mode == "pipecat_daily":
            why = self._capacity.why_no_room("pipecat_daily")
            if why is not None:
                breaker = self._modes.breaker
                if resolution.is_probe and breaker is not None:
                    breaker.release_probe()  # Daily is not tried by this one after all
                if resolution.fallback is None:
                    return Deferred(why)
                resolution = Resolution(
                    "phoenix_rest",
                    resolution.fallback,
                    fallback_reason=f"{why}; this session runs as phoenix_rest",
                )
        state.slot = self._capacity.try_take(resolution.mode)
        return resolution

    async def _lookup(
        self, state: SessionState, resolution: Resolution, record: SessionRecord | None
    ) -> Existing | None:
        existing = await resolution.runner.lookup(state.job)
        if (
            existing is None
            and state.redelivered
            and await self._may_have_create_in_flight(state, record)
        ):
            existing = await resolution.runner.lookup(state.job)
        return existing

    async def _provision(
        self, state: SessionState, resolution: Resolution, existing: Existing | None
    ) -> tuple[LiveSession, str | None]:
        """Start with the resolved runner; in `auto`, a Daily outage (its REST calls, or the bot's
        join) falls back to phoenix_rest. Every pipecat_daily start tells the Daily breaker how
        Daily did."""
        assert state.runner is not None
        breaker = self._modes.breaker if resolution.mode == "pipecat_daily" else None
        try:
            live = await self._start_unless_stopped(state, state.runner, existing)
        except (ProviderError, SessionFailure) as exc:
            is_outage = is_daily_outage(exc)
            if breaker is not None and is_outage:
                breaker.record_failure(exc.message)
            elif breaker is not None and resolution.is_probe:
                breaker.release_probe()
            if not (resolution.fallback and is_outage):
                raise
            reason = f"Daily is unavailable ({exc.message}); this session runs as phoenix_rest"
            log.warning("session.fallback", error=exc.message, code=exc.code)
            await self._outcomes.cleanup(state.runner, state.job)
            state.runner = resolution.fallback
            state.route.mode = resolution.fallback.mode
            if state.slot is not None:
                state.slot.move_to(resolution.fallback.mode)
            structlog.contextvars.bind_contextvars(mode=resolution.fallback.mode)
            fallback_existing = await resolution.fallback.lookup(state.job)
            live = await self._start_unless_stopped(state, resolution.fallback, fallback_existing)
            return live, reason
        except BaseException:  # stopped or cancelled while starting: it told nothing about Daily
            if breaker is not None and resolution.is_probe:
                breaker.release_probe()
            raise
        if breaker is not None:
            breaker.record_success()
        return live, resolution.fallback_reason

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
            log.info("session.start_interrupted", error=describe(exc))
        else:
            if state.is_abandoned:
                await live.abandon()
            else:
                await self._outcomes.release(live)
        raise StopDuringStart

    async def _follow(self, state: SessionState) -> None:
        """Wait for the end (provider, stop, max duration), release, publish `ended`."""
        assert state.live is not None
        live, job = state.live, state.job
        provider_end = asyncio.create_task(live.wait_end())
        stop = asyncio.create_task(state.stop_requested.wait())
        remaining_s = max(job.max_duration_s - state.age_s, 0)
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
            await self._outcomes.release(live)
            error = EventError(code=broke.code, message=broke.message, retryable=broke.retryable)
            transcript = await self._transcript(state)
            await self._outcomes.conclude(
                state, self._events.failed_event(state.route, error, transcript)
            )
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
        await self._outcomes.release(live)
        transcript = await self._transcript(state)
        await self._outcomes.conclude(
            state, self._events.ended_event(state.route, reason, state.age_s, transcript)
        )

    async def _transcript(self, state: SessionState) -> Transcript | None:
        """The released session's transcript, when its job asked for one."""
        if not state.job.transcript or state.live is None:
            return None
        return await state.live.transcript()

    async def _may_have_create_in_flight(
        self, state: SessionState, record: SessionRecord | None
    ) -> bool:
        """For a job redelivered after its worker vanished mid-start: wait until a provider call
        that worker left in flight can no longer land, so the session is adopted, not doubled.

        True when it waited (look again). A retry (a later attempt) never waits: its previous
        attempt cleaned up after itself.
        """
        if record is None or record.attempt != state.route.attempt:
            return False
        remaining_s = record.started_at + self._in_flight_window_s - time.time()
        if remaining_s <= 0:
            return False
        log.info("session.waiting_for_in_flight_start", wait_s=round(remaining_s, 2))
        await asyncio.sleep(remaining_s)
        return True
