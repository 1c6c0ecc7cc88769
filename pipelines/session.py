"""Runs one built pipeline to an outcome, with the failure detection Pipecat does not give.

Pipecat starts a pipeline whose Daily join failed, runs on when Tavus refused the conversation,
and swallows asyncio timeouts and cancellation in its runner. `LiveSession` watches the
transport and worker events and its own timers, and turns what happened into exactly one
`SessionOutcome`: `SessionEnded` (a contract ``ended`` reason) or `SessionFailed` (a ``code``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from pipecat.frames.frames import EndFrame, ErrorFrame, Frame
from pipecat.workers.runner import WorkerRunner

from pipelines.errors import describe_error
from pipelines.factory import BuiltPipeline
from pipelines.outcome import EndReason, SessionEnded, SessionFailed, SessionOutcome

__all__ = [
    "LiveSession",
    "OnReady",
    "SessionEnded",
    "SessionFailed",
    "SessionOutcome",
    "run_session",
]

log = structlog.get_logger(__name__)

OnReady = Callable[[str], Awaitable[None]]

_ERROR_MESSAGE_CHARS = 300
_RUNNER_ABANDON_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Ending:
    """What ended the session (first one wins) and whether the pipeline may drain first."""

    reason: EndReason | None = None
    code: str | None = None
    message: str = ""
    retryable: bool = False
    graceful: bool = False

    def describe(self) -> str:
        return self.reason or self.code or "unknown"


class LiveSession:
    """One pipeline run; `stop` ends it gracefully (``stopped``) from anywhere in the loop."""

    def __init__(
        self,
        built: BuiltPipeline,
        *,
        on_ready: OnReady,
        max_duration_s: float,
        setup_timeout_s: float,
        avatar_timeout_s: float,
        participant_left_timeout_s: float = 0.0,
        stop_grace_s: float = 5.0,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self._built = built
        self._on_ready = on_ready
        self._max_duration_s = max_duration_s
        self._setup_timeout_s = setup_timeout_s
        self._avatar_timeout_s = avatar_timeout_s
        self._participant_left_timeout_s = participant_left_timeout_s
        self._stop_grace_s = stop_grace_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._log = log.bind(session_id=built.spec.session_id)

        self._ending: _Ending | None = None
        self._ended = asyncio.Event()
        self._joined_or_failed = asyncio.Event()
        self._join_error: str | None = None
        self._pipeline_started = asyncio.Event()
        self._ready = False
        self._callback_error: BaseException | None = None
        self._ready_call: asyncio.Task[None] | None = None
        self._left_timer: asyncio.Task[None] | None = None

    def stop(self, reason: str | None = None) -> None:
        """End the session as ``stopped``: drain the pipeline, cancel it after ``stop_grace_s``."""
        self._log.info("session.stop_requested", reason=reason)
        self._decide(_Ending(reason="stopped", graceful=True))

    async def run(self) -> SessionOutcome:
        """Run the pipeline until something ends it; always leaves the pipeline torn down."""
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        self._wire_events()
        runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
        await runner.add_workers(self._built.worker)
        run_task = asyncio.create_task(runner.run(), name=f"pipeline:{self._built.spec.session_id}")
        watchers: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._watch_startup()),
            asyncio.create_task(self._cap_duration()),
        ]
        try:
            ended_wait = asyncio.create_task(self._ended.wait())
            watchers.append(ended_wait)
            await asyncio.wait([run_task, ended_wait], return_when=asyncio.FIRST_COMPLETED)
            if self._ending is not None and not run_task.done():
                await self._shut_down(run_task, self._ending)
        except asyncio.CancelledError:
            self._log.warning("session.cancelled_from_outside")
            await self._shut_down(run_task, _Ending(code="cancelled"))
            raise
        finally:
            await _cancel_all([*watchers, *([self._left_timer] if self._left_timer else [])])
            await self._finish_ready_call()
            await self._built.aclose()
        if self._callback_error is not None:
            raise self._callback_error
        # Let event handlers Pipecat fired while finishing (e.g. on_setup_timeout) run.
        await asyncio.sleep(0)
        return self._outcome(loop.time() - started_at)

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, ending: _Ending) -> None:
        if self._ending is not None:
            self._log.debug("session.later_ending_ignored", ending=ending.describe())
            return
        self._ending = ending
        self._log.info("session.ending", ending=ending.describe(), message=ending.message or None)
        self._ended.set()

    def _fail(self, code: str, message: str, *, retryable: bool = False) -> None:
        self._decide(_Ending(code=code, message=message, retryable=retryable))

    def _outcome(self, duration_s: float) -> SessionOutcome:
        conversation_id = self._built.avatar.conversation_id or (
            self._built.avatar.ended_conversation_ids[-1]
            if self._built.avatar.ended_conversation_ids
            else None
        )
        ending = self._ending
        if ending is None:
            if self._pipeline_started.is_set():
                ending = _Ending(reason="provider_ended")
            else:
                ending = _Ending(code="pipeline_error", message="the pipeline stopped before start")
        if ending.reason is not None:
            return SessionEnded(ending.reason, duration_s, self._ready, conversation_id)
        return SessionFailed(
            ending.code or "pipeline_error",
            ending.message,
            ending.retryable,
            duration_s,
            self._ready,
            conversation_id,
        )

    # -- shutting down ------------------------------------------------------------------------

    async def _shut_down(self, run_task: asyncio.Task[None], ending: _Ending) -> None:
        """End the pipeline (drain first when graceful), then cancel, then abandon the runner."""
        worker = self._built.worker
        if ending.graceful:
            await worker.queue_frame(EndFrame(reason=ending.describe()))
            if await _finished_within(run_task, self._stop_grace_s):
                return
            self._log.warning("session.drain_timeout", stop_grace_s=self._stop_grace_s)
        await worker.cancel(reason=ending.describe())
        if await _finished_within(run_task, self._shutdown_timeout_s):
            return
        # WorkerRunner.run() returns normally when its task is cancelled.
        self._log.error("session.runner_stuck", shutdown_timeout_s=self._shutdown_timeout_s)
        run_task.cancel()
        if not await _finished_within(run_task, _RUNNER_ABANDON_TIMEOUT_S):
            self._log.error("session.runner_abandoned")

    # -- watching -----------------------------------------------------------------------------

    async def _watch_startup(self) -> None:
        """Ready once the bot is in the user room and Tavus has a conversation; then the replica."""
        spec = self._built.spec
        try:
            async with asyncio.timeout(self._setup_timeout_s):
                await self._joined_or_failed.wait()
                if self._join_error is not None:
                    self._fail("daily_join_failed", self._join_error, retryable=True)
                    return
                await self._pipeline_started.wait()
        except TimeoutError:
            self._fail(
                "provider_timeout",
                f"the bot did not join the room and start within {self._setup_timeout_s:g}s",
                retryable=True,
            )
            return
        avatar = self._built.avatar
        if avatar.conversation_id is None:
            reason = avatar.failure_reason or "Tavus did not create a conversation (see the log)"
            self._fail("tavus_conversation_failed", reason, retryable=avatar.failure_retryable)
            return
        await self._announce_ready(avatar.conversation_id)
        try:
            async with asyncio.timeout(self._avatar_timeout_s):
                await avatar.replica_present.wait()
        except TimeoutError:
            self._fail(
                "avatar_timeout",
                f"replica {spec.tavus.replica_id} did not join Tavus conversation "
                f"{avatar.conversation_id} within {self._avatar_timeout_s:g}s",
                retryable=True,
            )

    async def _announce_ready(self, conversation_id: str) -> None:
        self._ready = True
        self._log.info("session.ready", conversation_id=conversation_id)
        # Shielded: an ending that cancels the watchers must not cut a ready event in half.
        self._ready_call = asyncio.create_task(self._call_on_ready(conversation_id))
        await asyncio.shield(self._ready_call)

    async def _call_on_ready(self, conversation_id: str) -> None:
        try:
            await self._on_ready(conversation_id)
        except Exception as exc:
            self._callback_error = exc
            self._fail(
                "ready_callback_failed",
                f"announcing the session as ready failed: {describe_error(exc)}",
                retryable=True,
            )

    async def _finish_ready_call(self) -> None:
        """Let an on_ready call still in flight finish (bounded by ``stop_grace_s``)."""
        if self._ready_call is None or self._ready_call.done():
            return
        if not await _finished_within(self._ready_call, self._stop_grace_s):
            self._log.error("session.ready_callback_stuck", stop_grace_s=self._stop_grace_s)
            await _cancel_all([self._ready_call])

    async def _cap_duration(self) -> None:
        await asyncio.sleep(self._max_duration_s)
        self._decide(_Ending(reason="max_duration"))

    async def _end_after_user_left(self) -> None:
        await asyncio.sleep(self._participant_left_timeout_s)
        self._decide(_Ending(reason="participant_left"))

    # -- Pipecat events -----------------------------------------------------------------------

    def _wire_events(self) -> None:
        transport, worker = self._built.transport, self._built.worker
        transport.add_event_handler("on_joined", self._on_joined)
        transport.add_event_handler("on_error", self._on_transport_error)
        transport.add_event_handler("on_participant_joined", self._on_participant_joined)
        transport.add_event_handler("on_participant_left", self._on_participant_left)
        worker.add_event_handler("on_pipeline_started", self._on_pipeline_started)
        worker.add_event_handler("on_pipeline_error", self._on_pipeline_error)
        worker.add_event_handler("on_setup_timeout", self._on_setup_timeout)
        worker.add_event_handler("on_idle_timeout", self._on_idle_timeout)

    async def _on_joined(self, _transport: Any, _data: Any) -> None:
        self._log.info("session.bot_joined")
        self._joined_or_failed.set()

    async def _on_transport_error(self, _transport: Any, error: str) -> None:
        if self._joined_or_failed.is_set():
            self._log.warning(
                "session.transport_error", error=_clip(error) or "Daily gave no detail"
            )
            return
        self._join_error = (
            f"the bot could not join the Daily room: {_clip(error) or 'Daily gave no detail'}"
        )
        self._joined_or_failed.set()

    async def _on_participant_joined(self, _transport: Any, _participant: Any) -> None:
        if self._left_timer is not None:
            self._log.info("session.user_rejoined")
            self._left_timer.cancel()
            self._left_timer = None

    async def _on_participant_left(self, _transport: Any, _participant: Any, reason: Any) -> None:
        self._log.info("session.user_left", reason=reason)
        if self._left_timer is None:
            self._left_timer = asyncio.create_task(self._end_after_user_left())

    async def _on_pipeline_started(self, _worker: Any, _frame: Frame) -> None:
        self._pipeline_started.set()

    async def _on_pipeline_error(self, _worker: Any, frame: ErrorFrame) -> None:
        processor = frame.processor
        unusable = processor is not None and not processor.is_usable
        if not (frame.fatal or unusable):
            self._log.warning("session.pipeline_warning", error=_clip(str(frame.error)))
            return
        source = f"{processor.name}: " if processor is not None else ""
        self._fail("pipeline_error", f"{source}{_clip(str(frame.error))}")

    async def _on_setup_timeout(self, _worker: Any) -> None:
        self._fail(
            "provider_timeout",
            f"the pipeline did not finish connecting (Daily, Tavus, STT, TTS) within "
            f"{self._built.spec.setup_timeout_s:g}s",
            retryable=True,
        )

    async def _on_idle_timeout(self, _worker: Any) -> None:
        self._decide(_Ending(reason="idle"))


async def run_session(
    built: BuiltPipeline,
    *,
    on_ready: OnReady,
    max_duration_s: float,
    setup_timeout_s: float,
    avatar_timeout_s: float,
    participant_left_timeout_s: float = 0.0,
    stop_event: asyncio.Event | None = None,
    stop_grace_s: float = 5.0,
    shutdown_timeout_s: float = 30.0,
) -> SessionOutcome:
    """Run ``built`` to its outcome; setting ``stop_event`` ends it as ``stopped``.

    ``on_ready(conversation_id)`` is awaited once, when the bot has joined the user room and the
    Tavus conversation exists. ``built`` is closed on return.
    """
    session = LiveSession(
        built,
        on_ready=on_ready,
        max_duration_s=max_duration_s,
        setup_timeout_s=setup_timeout_s,
        avatar_timeout_s=avatar_timeout_s,
        participant_left_timeout_s=participant_left_timeout_s,
        stop_grace_s=stop_grace_s,
        shutdown_timeout_s=shutdown_timeout_s,
    )
    if stop_event is None:
        return await session.run()

    async def stop_when_set() -> None:
        await stop_event.wait()
        session.stop("stop_event")

    stopper = asyncio.create_task(stop_when_set())
    try:
        return await session.run()
    finally:
        await _cancel_all([stopper])


async def _finished_within(task: asyncio.Task[Any], timeout_s: float) -> bool:
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    return bool(done)


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel helper tasks and wait for them; our own cancellation still propagates."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("session.helper_failed", error=describe_error(result))


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_MESSAGE_CHARS else text[: _ERROR_MESSAGE_CHARS - 1] + "…"
