"""`ProcessPool`: keeps ``size`` warm session processes and hands one out per session.

A child that dies, hangs or is slow to warm is replaced in the background; at most
``max_concurrent_spawns`` children preload at once (a cold start for a waiting job skips the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections import deque
from collections.abc import Callable, Mapping

import structlog

from worker.pool.errors import CRASHED, POOL_CLOSED, PoolUnavailable
from worker.pool.process import ChildOptions, ChildProcess

log = structlog.get_logger(__name__)

_MAX_BACKOFF_S = 30.0
# Environment names the child never needs: its secrets arrive on stdin with the session.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AMQP_URL", re.IGNORECASE)


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ``base`` (default ``os.environ``) without secret-looking names."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if not _SECRET_NAME.search(name)}
    env["LOGURU_AUTOINIT"] = "0"  # Pipecat's import-time banner would bypass our JSON logging
    return env


BROKEN_AFTER_FAILURES = 5


class ProcessPool:
    """Warm session processes; `acquire` one per session, `aclose` stops them all (idempotent)."""

    def __init__(
        self,
        *,
        size: int,
        heartbeat_interval_s: float = 1.0,
        heartbeat_timeout_s: float = 10.0,
        warm_timeout_s: float = 60.0,
        child_args: list[str] | None = None,
        max_concurrent_spawns: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.size = size
        self._warm_timeout_s = warm_timeout_s
        self._options = ChildOptions(
            args=tuple(child_args or ()),
            env=child_env(env),
            heartbeat_interval_s=heartbeat_interval_s,
            heartbeat_timeout_s=heartbeat_timeout_s,
        )
        self._max_concurrent_spawns = max_concurrent_spawns
        self._spawn_slots = asyncio.Semaphore(max_concurrent_spawns)
        self._warm: deque[ChildProcess] = deque()
        self._busy: set[ChildProcess] = set()
        self._children: set[ChildProcess] = set()
        self._fillers: set[asyncio.Task[None]] = set()
        self._cold_starting = 0
        self._failures_in_a_row = 0
        self._changed = asyncio.Event()
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        # Figures for metrics.
        self.spawned_total = 0
        self.crashed_total = 0
        self.hung_total = 0
        self.warm_timeouts_total = 0
        self.last_spawn_s: float | None = None  # exec → process running
        self.last_warm_s: float | None = None  # exec → child reported warm
        self.on_warm: Callable[[float], None] = lambda _seconds: None  # e.g. a metrics histogram

    @property
    def warm_count(self) -> int:
        """Children preloaded and waiting for a session."""
        return sum(1 for child in self._warm if child.is_warm)

    @property
    def starting_count(self) -> int:
        """Children being spawned or preloading (background refills and cold starts)."""
        return len(self._fillers) + self._cold_starting

    @property
    def busy_count(self) -> int:
        """Children handed out by `acquire` that have not exited yet."""
        return len(self._busy)

    @property
    def is_broken(self) -> bool:
        """True after BROKEN_AFTER_FAILURES spawns in a row failed (a restart is needed)."""
        return self._failures_in_a_row >= BROKEN_AFTER_FAILURES

    async def start(self) -> None:
        """Begin warming ``size`` children in the background; returns at once."""
        log.info("pool.starting", size=self.size, max_concurrent_spawns=self._max_concurrent_spawns)
        self._refill()

    async def wait_warm(self, count: int | None = None, timeout_s: float = 60.0) -> bool:
        """Wait until ``count`` (default ``size``) children are warm; False on timeout."""
        wanted = self.size if count is None else count
        try:
            async with asyncio.timeout(timeout_s):
                await self._wait_until(lambda: self.warm_count >= wanted)
        except TimeoutError:
            return False
        return True

    async def acquire(self, timeout_s: float = 30.0) -> ChildProcess:
        """A warm child, or a cold one spawned now when none is warm; refills in the background.

        Raises `PoolUnavailable` when the pool is closed or a cold child is not warm in time.
        """
        if self._closed:
            raise PoolUnavailable(POOL_CLOSED, "the worker is shutting down")
        while self._warm:
            child = self._warm.popleft()
            if child.is_warm:
                self._busy.add(child)
                self._refill()
                log.info("pool.acquired", pid=child.pid, warm_count=self.warm_count)
                return child
        self._refill()
        log.warning("pool.cold_start", size=self.size, starting_count=self.starting_count)
        self._cold_starting += 1
        try:
            child = await self._spawn_warm(
                cold_start=True, timeout_s=min(timeout_s, self._warm_timeout_s)
            )
        finally:
            self._cold_starting -= 1
        self._busy.add(child)
        return child

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop every child (busy ones end as ``stopped``), kill what is left after ``timeout_s``.

        Idempotent; concurrent calls wait for the same close.
        """
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.create_task(self._close(timeout_s))
        await asyncio.shield(self._close_task)

    # -- filling --------------------------------------------------------------------------------

    def _refill(self) -> None:
        if self._closed:
            return
        for _ in range(self.size - self.warm_count - len(self._fillers)):
            task = asyncio.create_task(self._fill_one(), name="pool-fill")
            self._fillers.add(task)
            task.add_done_callback(self._filled)

    def _filled(self, task: asyncio.Task[None]) -> None:
        self._fillers.discard(task)
        self._refill()  # replaces a failed attempt (after its backoff)

    async def _fill_one(self) -> None:
        try:
            child = await self._spawn_warm(cold_start=False, timeout_s=self._warm_timeout_s)
        except PoolUnavailable as exc:
            self._failures_in_a_row += 1
            backoff_s = min(0.5 * 2 ** (self._failures_in_a_row - 1), _MAX_BACKOFF_S)
            log.warning("pool.spawn_failed", error=exc.message, retry_in_s=backoff_s)
            await asyncio.sleep(backoff_s)
        else:
            self._failures_in_a_row = 0
            self._warm.append(child)
            self._notify()

    async def _spawn_warm(self, *, cold_start: bool, timeout_s: float) -> ChildProcess:
        slot = contextlib.nullcontext() if cold_start else self._spawn_slots
        async with slot:
            if self._closed:
                raise PoolUnavailable(POOL_CLOSED, "the worker is shutting down")
            child = await ChildProcess.spawn(
                self._options, cold_start=cold_start, on_exit=self._on_child_exit
            )
            self._children.add(child)
            self.spawned_total += 1
            self.last_spawn_s = child.spawn_s
            try:
                await child.wait_warm(timeout_s)
            except PoolUnavailable:
                if child.is_alive:
                    self.warm_timeouts_total += 1
                await child.kill()
                raise
            except asyncio.CancelledError:
                await child.kill()
                raise
        self.last_warm_s = child.warm_s
        self.on_warm(child.warm_s)
        return child

    def _on_child_exit(self, child: ChildProcess) -> None:
        self._children.discard(child)
        self._busy.discard(child)
        with contextlib.suppress(ValueError):
            self._warm.remove(child)
        if not self._closed:
            if child.exit_cause == "hung":
                self.hung_total += 1
            elif child.exit_cause is None and getattr(child.outcome, "code", None) == CRASHED:
                self.crashed_total += 1
        self._notify()
        self._refill()

    # -- closing --------------------------------------------------------------------------------

    async def _close(self, timeout_s: float) -> None:
        log.info("pool.closing", warm_count=self.warm_count, busy_count=self.busy_count)
        for task in list(self._fillers):
            task.cancel()
        await asyncio.gather(*self._fillers, return_exceptions=True)
        children = list(self._children)
        for child in children:
            child.stop("worker_pool_closed")
            child.close_stdin()
        await asyncio.gather(*(child.wait_exited(timeout_s) for child in children))
        await asyncio.gather(*(child.kill() for child in children))
        self._notify()
        log.info("pool.closed")

    # -- waiting --------------------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            if self._closed:
                raise PoolUnavailable(POOL_CLOSED, "the worker is shutting down")
            await self._changed.wait()
