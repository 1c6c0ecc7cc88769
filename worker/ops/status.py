"""The worker's HTTP status server: /healthz (liveness), /readyz (takes jobs), /status (JSON) and
/metrics (Prometheus), answered from a `WorkerView` the app implements.

/healthz fails only for what a restart fixes: the broker down longer than the reconnect budget
(aio-pika reconnects every 5 s by itself) or a broken process pool. Draining or full is not
unhealthy; it is "not ready".
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog
from aiohttp import web

from worker.breaker import DailyBreaker
from worker.ops.capacity import MODES, Capacity
from worker.ops.metrics import CONTENT_TYPE, UNKNOWN_MODE, Metrics

log = structlog.get_logger("worker.ops.status")

DEFAULT_STATUS_PORT = 8081
DEFAULT_RECONNECT_BUDGET_S = 60.0

SessionRow = tuple[str, str | None, float, str]
"""(session_id, mode or None before it is resolved, age_s, state), e.g. ("call-1", "phoenix_rest",
12.5, "ready")."""


class WorkerView(Protocol):
    """What the status server reads from the worker (the app implements it; read-only)."""

    @property
    def worker_id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def is_draining(self) -> bool: ...
    @property
    def is_full(self) -> bool:
        """No free slot, or the load monitor says overloaded."""

    @property
    def is_broker_connected(self) -> bool: ...
    @property
    def broker_down_for_s(self) -> float | None:
        """Seconds since the broker connection was lost; None while connected."""

    @property
    def is_pool_broken(self) -> bool:
        """The session process pool cannot start processes (a restart is needed)."""

    @property
    def sessions(self) -> Sequence[SessionRow]: ...
    @property
    def max_sessions(self) -> int: ...
    @property
    def free_slots(self) -> int: ...
    @property
    def warm_processes(self) -> int: ...
    @property
    def modes(self) -> Mapping[str, str | None]:
        """Each mode → None when it can run here, else the reason it cannot."""

    @property
    def load(self) -> float:
        """CPU load, 0..1 (the load monitor's window average)."""


def health_problems(view: WorkerView, reconnect_budget_s: float) -> list[str]:
    """Why the worker is unhealthy (empty: healthy)."""
    problems = []
    down_s = view.broker_down_for_s
    if down_s is not None and down_s > reconnect_budget_s:
        problems.append(
            f"broker disconnected for {down_s:.0f} s (reconnect budget {reconnect_budget_s:.0f} s)"
        )
    if view.is_pool_broken:
        problems.append("session process pool is broken")
    return problems


def readiness_problems(view: WorkerView) -> list[str]:
    """Why the worker is not taking jobs (empty: ready)."""
    problems = []
    if view.is_draining:
        problems.append("draining")
    if view.is_full:
        if view.free_slots == 0:
            problems.append(f"full ({view.max_sessions} of {view.max_sessions} sessions)")
        else:
            problems.append(f"overloaded (load {view.load:.2f})")
    if not view.is_broker_connected:
        problems.append("broker disconnected")
    return problems


def capacity_document(capacity: Capacity) -> dict[str, Any]:
    """/status "capacity": the plan (and where its figures came from) and the room per mode."""
    return {**capacity.plan.describe(), "modes": capacity.snapshot()}


def status_document(
    view: WorkerView,
    reconnect_budget_s: float,
    capacity: Capacity | None = None,
    breaker: DailyBreaker | None = None,
) -> dict[str, Any]:
    """The /status JSON: everything an operator asks about one worker."""
    health, readiness = health_problems(view, reconnect_budget_s), readiness_problems(view)
    down_s = view.broker_down_for_s
    document = {
        "worker_id": view.worker_id,
        "version": view.version,
        "healthy": not health,
        "ready": not readiness,
        "problems": health + readiness,
        "draining": view.is_draining,
        "full": view.is_full,
        "broker": {
            "connected": view.is_broker_connected,
            "down_for_s": None if down_s is None else round(down_s, 1),
        },
        "pool_broken": view.is_pool_broken,
        "load": round(view.load, 3),
        "max_sessions": view.max_sessions,
        "free_slots": view.free_slots,
        "warm_processes": view.warm_processes,
        "modes": {
            mode: {"available": reason is None, "reason": reason}
            for mode, reason in view.modes.items()
        },
        "sessions": [
            {"session_id": sid, "mode": mode, "age_s": round(age_s, 1), "state": state}
            for sid, mode, age_s, state in view.sessions
        ],
    }
    if capacity is not None:
        document["capacity"] = capacity_document(capacity)
    if breaker is not None:
        document["daily_breaker"] = breaker.snapshot().to_json()
    return document


def refresh_gauges(
    metrics: Metrics,
    view: WorkerView,
    capacity: Capacity | None = None,
    breaker: DailyBreaker | None = None,
) -> None:
    """Copy the worker's state into the metrics' gauges (done on every scrape)."""
    by_mode: dict[str, int] = {}
    for _, mode, _, _ in view.sessions:
        key = mode or UNKNOWN_MODE
        by_mode[key] = by_mode.get(key, 0) + 1
    metrics.set_gauges(
        sessions_by_mode=by_mode,
        warm_processes=view.warm_processes,
        load=view.load,
        free_slots=view.free_slots,
        max_sessions=view.max_sessions,
        is_draining=view.is_draining,
        is_broker_connected=view.is_broker_connected,
    )
    if capacity is not None:
        metrics.set_capacity(
            {mode: capacity.max_for(mode) for mode in MODES},
            {mode: capacity.free_for(mode) for mode in MODES},
            capacity.plan.cpu_threshold,
        )
    if breaker is not None:
        metrics.set_daily_breaker(breaker.snapshot())


class StatusServer:
    """Serves the four endpoints on `host:port`; `port=0` picks a free port (see `.port`)."""

    def __init__(
        self,
        view: WorkerView,
        metrics: Metrics,
        host: str = "0.0.0.0",
        port: int = DEFAULT_STATUS_PORT,
        *,
        reconnect_budget_s: float = DEFAULT_RECONNECT_BUDGET_S,
        capacity: Capacity | None = None,
        breaker: DailyBreaker | None = None,
    ) -> None:
        self._view = view
        self.capacity = capacity  # per-mode room for /status and /metrics, when the app has one
        self.breaker = breaker  # the Daily circuit breaker, when pipecat_daily can run
        self._metrics = metrics
        self._host = host
        self._requested_port = port
        self.reconnect_budget_s = reconnect_budget_s
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics_page)
        return app

    async def start(self) -> None:
        """Bind and serve; raises OSError when the port is taken."""
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            sock = socket.create_server((self._host, self._requested_port), family=family)
        except OSError:
            await runner.cleanup()
            raise
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self.port = sock.getsockname()[1]
        log.info("status.listening", host=self._host, port=self.port)

    async def aclose(self) -> None:
        """Stop serving; calling it again does nothing."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        problems = health_problems(self._view, self.reconnect_budget_s)
        if problems:
            return web.Response(status=503, text=f"unhealthy: {'; '.join(problems)}\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = readiness_problems(self._view)
        if problems:
            return web.Response(status=503, text=f"not ready: {'; '.join(problems)}\n")
        return web.Response(text="ready\n")

    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response(
            status_document(self._view, self.reconnect_budget_s, self.capacity, self.breaker)
        )

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        refresh_gauges(self._metrics, self._view, self.capacity, self.breaker)
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
