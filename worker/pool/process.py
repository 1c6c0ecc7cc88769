"""`ChildProcess`: the worker's handle on one session process (spawn, watch, talk, reap).

Turns what the process does into exactly one `ChildOutcome`: the child's own ``ended``/``failed``,
or a synthesized failure when it crashed, stopped heartbeating (killed) or was killed by us.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pipelines.factory import SessionSpec
from worker.logs import REDACTOR, SecretRedactor
from worker.pool.channel import ChildChannel
from worker.pool.childlog import LINE_LIMIT_BYTES
from worker.pool.errors import CRASHED, START_FAILED, ChildFailed, PoolUnavailable
from worker.pool.exits import ExitCause, describe_exit, exit_outcome
from worker.pool.protocol import (
    ChildOutcome,
    Ended,
    Failed,
    Message,
    Ready,
    Start,
    Stop,
    Warm,
    spec_secrets,
    spec_to_dict,
)

log = structlog.get_logger(__name__)

CHILD_MODULE = "worker.pool.child"
_STDOUT_DRAIN_S = 2.0  # after exit, how long the last lines may take to arrive
_KILL_WAIT_S = 10.0


@dataclass(frozen=True)
class ChildOptions:
    """How session processes are started and watched."""

    args: tuple[str, ...] = ()  # extra child arguments, e.g. ("--factories", "pkg.mod:hook")
    env: dict[str, str] | None = None
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 10.0
    exit_grace_s: float = 5.0  # after its outcome, how long a child may take to exit


class ChildProcess:
    """One session process. One session per process; a new session needs a new process."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        options: ChildOptions,
        *,
        cold_start: bool,
        spawned_at: float,
        on_exit: Callable[[ChildProcess], None],
    ) -> None:
        self._proc = proc
        self._options = options
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self.pid = proc.pid
        self.cold_start = cold_start
        self.spawn_s = self._loop.time() - spawned_at  # exec → process running
        self.warm_s = 0.0  # exec → "warm" as the parent saw it
        self.preload_s = 0.0  # the child's figure: interpreter start → warm
        self.returncode: int | None = None
        self.exit_cause: ExitCause | None = None  # set when we ended it (or decided to)
        self._spawned_at = spawned_at
        self._redactor = SecretRedactor()
        self._log = log.bind(pid=self.pid)
        self._last_message_at = self._loop.time()
        self._outcome_at: float | None = None
        self._session_started = False
        self._conversation_id: str | None = None
        self._outcome: ChildOutcome | None = None
        self._warm, self._ready = asyncio.Event(), asyncio.Event()
        self._ended, self._exited = asyncio.Event(), asyncio.Event()
        self._channel = ChildChannel(proc, on_message=self._handle, redact=self._redact)
        self._watcher = asyncio.create_task(self._watch(), name=f"child-watch:{self.pid}")
        self._reaper = asyncio.create_task(self._reap(), name=f"child-reap:{self.pid}")

    @classmethod
    async def spawn(
        cls, options: ChildOptions, *, cold_start: bool, on_exit: Callable[[ChildProcess], None]
    ) -> ChildProcess:
        """Start ``python -m worker.pool.child``; it is warm once `wait_warm` returns."""
        spawned_at = asyncio.get_running_loop().time()
        argv = ["-m", CHILD_MODULE, "--heartbeat-s", f"{options.heartbeat_interval_s:g}"]
        argv += ["--spawned-at", f"{time.time():.6f}", *options.args]
        pipe = asyncio.subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdin=pipe, stdout=pipe, stderr=pipe, env=options.env,
                limit=LINE_LIMIT_BYTES,
            )  # fmt: skip
        except OSError as exc:
            message = f"could not start a session process: {exc}"
            raise PoolUnavailable(START_FAILED, message) from exc
        child = cls(proc, options, cold_start=cold_start, spawned_at=spawned_at, on_exit=on_exit)
        child._log.info(
            "pool.child_spawned", cold_start=cold_start, spawn_s=round(child.spawn_s, 3)
        )
        return child

    # -- state ----------------------------------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        """The process runs and has not been told to die."""
        return not self._exited.is_set() and self.exit_cause is None

    @property
    def is_warm(self) -> bool:
        """Warm, alive and no session handed to it yet."""
        return self._warm.is_set() and self.is_alive and not self._session_started

    @property
    def outcome(self) -> ChildOutcome | None:
        """The session's outcome once known."""
        return self._outcome

    # -- the session ----------------------------------------------------------------------------

    async def wait_warm(self, timeout_s: float) -> None:
        """Return once the child has preloaded; raises `PoolUnavailable` if it dies or is slow."""
        try:
            async with asyncio.timeout(timeout_s):
                await _first_of(self._warm, self._exited)
        except TimeoutError:
            raise PoolUnavailable(
                START_FAILED, f"session process {self.pid} was not warm within {timeout_s:g}s"
            ) from None
        if not self._warm.is_set():
            raise PoolUnavailable(
                START_FAILED,
                f"session process {self.pid} exited while starting ({describe_exit(self.returncode)})",
            )

    async def start_session(
        self,
        spec: SessionSpec,
        *,
        max_duration_s: float,
        setup_timeout_s: float,
        avatar_timeout_s: float,
        participant_left_timeout_s: float,
        transcript: bool = False,
    ) -> None:
        """Send the session to the child (secrets travel on stdin only); raises `ChildFailed`."""
        if self._session_started:
            raise RuntimeError(f"session process {self.pid} already ran a session")
        self._session_started = True
        self._redactor.add(spec_secrets(spec))
        start = Start(
            spec=spec_to_dict(spec),
            max_duration_s=max_duration_s,
            setup_timeout_s=setup_timeout_s,
            avatar_timeout_s=avatar_timeout_s,
            participant_left_timeout_s=participant_left_timeout_s,
            transcript=transcript,
        )
        self._log.info("pool.session_sent", session_id=spec.session_id)
        if not await self._channel.send(start):
            if not await self.wait_exited(_STDOUT_DRAIN_S):
                await self.kill()  # alive but not reading its stdin: of no use
            raise self._failure()

    async def wait_ready(self) -> str | None:
        """The conversation id once ready; None if it ended (e.g. stopped) before ready.

        Raises `ChildFailed` when the session failed or the process died first.
        """
        await _first_of(self._ready, self._ended)
        if self._ready.is_set():
            return self._conversation_id
        if isinstance(self._outcome, Failed):
            raise self._failure()
        return None

    async def wait_outcome(self) -> ChildOutcome:
        """The child's ``ended``/``failed``, or the failure synthesized when the process died.

        A child given no session has an outcome only once it exits (e.g. after `stop`).
        """
        await self._ended.wait()
        assert self._outcome is not None
        return self._outcome

    def stop(self, reason: str) -> None:
        """Ask the child to end its session gracefully (``stopped``); an idle child exits."""
        self._log.info("pool.child_stop", reason=reason)
        self._mark_idle_stopped()
        self._channel.send_nowait(Stop(reason=reason))

    async def kill(self) -> None:
        """SIGKILL the process and reap it; idempotent."""
        if not self._exited.is_set():
            self._kill_now("killed")
        await self.wait_exited(_KILL_WAIT_S)

    def close_stdin(self) -> None:
        """EOF on the child's stdin: what it sees when the parent goes away (it stops)."""
        self._mark_idle_stopped()
        self._channel.close_stdin()

    async def wait_exited(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the process to exit and be reaped; True if it has."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._exited.wait()
        except TimeoutError:
            return False
        return True

    # -- messages -------------------------------------------------------------------------------

    def _handle(self, message: Message) -> None:
        now = self._loop.time()
        self._last_message_at = now
        if isinstance(message, Warm):
            self.warm_s, self.preload_s = now - self._spawned_at, message.warm_s
            self._log.info(
                "pool.child_warm", warm_s=round(self.warm_s, 3), preload_s=message.warm_s
            )
            self._warm.set()
        elif isinstance(message, Ready):
            self._conversation_id = message.conversation_id
            self._ready.set()
        elif isinstance(message, Ended | Failed):
            if isinstance(message, Failed):
                message = dataclasses.replace(message, message=self._redact(message.message))
            self._outcome_at = now
            self._set_outcome(message)

    # -- watching and reaping -------------------------------------------------------------------

    async def _watch(self) -> None:
        """Kill a warm child that stops heartbeating, or one that lingers after its outcome."""
        options = self._options
        timeout_s = options.heartbeat_timeout_s
        interval_s = min(options.heartbeat_interval_s, timeout_s / 4)
        last_tick = self._loop.time()
        while True:
            await asyncio.sleep(interval_s)
            now = self._loop.time()
            lagged = now - last_tick > 2 * interval_s + 0.5  # our own loop stalled: recheck later
            last_tick = now
            if self._outcome_at is not None:
                if now - self._outcome_at > options.exit_grace_s:
                    self._log.warning("pool.child_lingering", exit_grace_s=options.exit_grace_s)
                    self._kill_now("lingered")
                    return
            elif self._warm.is_set() and not lagged and now - self._last_message_at > timeout_s:
                self._log.error("pool.child_hung", heartbeat_timeout_s=timeout_s)
                self._kill_now("hung")
                return

    def _kill_now(self, cause: ExitCause) -> None:
        if self.exit_cause is None or self.exit_cause == "stopped":
            self.exit_cause = cause
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()

    def _mark_idle_stopped(self) -> None:
        if not self._session_started and self.exit_cause is None:
            self.exit_cause = "stopped"

    async def _reap(self) -> None:
        returncode = await self._proc.wait()
        # The last lines (the outcome) may still be in the pipe.
        await self._channel.wait_drained(_STDOUT_DRAIN_S)
        self.returncode = returncode
        self._watcher.cancel()  # the stderr forwarder ends at EOF by itself
        if self._outcome is None:
            self._set_outcome(
                exit_outcome(
                    self.pid,
                    returncode,
                    self.exit_cause,
                    heartbeat_timeout_s=self._options.heartbeat_timeout_s,
                )
            )
        self._log.info("pool.child_exited", returncode=returncode, cause=self.exit_cause)
        self._exited.set()
        self._on_exit(self)

    def _set_outcome(self, outcome: ChildOutcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._ended.set()

    def _failure(self) -> ChildFailed:
        outcome = self._outcome
        if isinstance(outcome, Failed):
            return ChildFailed(outcome.code, outcome.message, retryable=outcome.retryable)
        return ChildFailed(CRASHED, f"session process {self.pid} is gone", retryable=True)

    def _redact(self, text: str) -> str:
        return REDACTOR.redact(self._redactor.redact(text))


async def _first_of(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
