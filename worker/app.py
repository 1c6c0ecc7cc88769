"""The composition root: builds the worker from Settings (clients, broker, runners) in an
AsyncExitStack, runs it, and owns the signals (first: drain; second: end sessions now and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from contextlib import AsyncExitStack
from typing import Any

import structlog

from tavus._http import Observer, RetryPolicy
from tavus.client import TavusClient
from tavus.daily import DailyClient
from tavus.resolve import PersonaResolver
from worker.breaker import DailyBreaker
from worker.broker import Broker, Topology
from worker.choices import AllowedChoices
from worker.contract import ResolvedMode
from worker.core.adoption import Adopter
from worker.core.claims import SessionClaims
from worker.core.control import ControlListener
from worker.core.events import EventPublisher
from worker.core.intake import Intake
from worker.core.manager import SessionManager
from worker.core.reaper import Reaper
from worker.core.records import SessionRecords
from worker.modes import ModeResolver
from worker.ops.capacity import Capacity, CapacityPlan
from worker.ops.load import LoadMonitor
from worker.ops.metrics import Metrics
from worker.ops.status import StatusServer
from worker.sessions.base import SessionRunner
from worker.sessions.monitor import ConversationMonitor
from worker.sessions.persona_lock import PersonaLocks
from worker.sessions.phoenix import PhoenixRunner
from worker.settings import Settings, StartupError
from worker.view import AppView

log = structlog.get_logger(__name__)

FORCED_STOP_TIMEOUT_S = 5.0


def pipecat_daily_unavailable_reason(settings: Settings) -> str | None:
    """Why this worker cannot run pipecat_daily sessions, every reason joined by "; " (None when
    it can)."""
    from pipelines.availability import daily_availability, daily_missing_reason

    # The cheap checks first (none imports anything): importing Pipecat and daily-python costs
    # ~34 MB and ~1 s, which a worker that cannot run pipecat_daily anyway should not pay.
    reasons = []
    if settings.daily_api_key is None:
        reasons.append("DAILY_API_KEY is not set")
    missing = settings.provider_config().missing_settings()
    if missing:
        reasons.append(f"the pipeline's provider settings are not set: {', '.join(missing)}")
    not_installed = daily_missing_reason()
    if not_installed is not None:
        reasons.append(not_installed)
    if reasons:
        return "; ".join(reasons)
    ok, reason = daily_availability()
    if not ok:
        return reason or "daily-python cannot be imported"
    if settings.worker_warm_processes == 0 and settings.worker_max_sessions == 0:
        return "WORKER_WARM_PROCESSES and WORKER_MAX_SESSIONS leave no process for a pipeline"
    return None


def build_tavus_client(settings: Settings, observer: Observer | None = None) -> TavusClient:
    if settings.tavus_api_key is None:
        raise SystemExit(
            "TAVUS_API_KEY is not set: the worker cannot start Tavus sessions without it"
        )
    return TavusClient(
        api_key=settings.tavus_api_key.get_secret_value(),
        base_url=settings.tavus_base_url,
        timeout_s=settings.provider_timeout_s,
        retry=RetryPolicy(attempts=settings.provider_retry_attempts),
        observer=observer,
    )


class WorkerApp:
    """One worker process: consumes jobs, runs sessions, drains on SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = Broker(settings.amqp_url.get_secret_value(), Topology.from_settings(settings))
        self.records = SessionRecords(
            self.broker,
            replicated=settings.records_replicated(),
            keep_finished_s=settings.worker_finished_record_keep_s,
        )
        self.claims = SessionClaims(self.broker, self.records)
        self.sessions: SessionManager | None = None
        self.intake: Intake | None = None
        self.pool: Any = None  # worker.pool.ProcessPool when pipecat_daily can run
        self.reaper: Reaper | None = None
        self.metrics = Metrics()
        self.load_monitor: LoadMonitor | None = None
        self.status: StatusServer | None = None
        self.mode_availability: dict[str, str | None] = {}
        self.daily_breaker: DailyBreaker | None = None  # when pipecat_daily can run
        self.capacity: Capacity | None = None  # sessions per mode, built once the modes are known
        self.view = AppView(self)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self.started = asyncio.Event()

    @property
    def is_draining(self) -> bool:
        return self._stop.is_set()

    @property
    def is_overloaded(self) -> bool:
        """Over the load gate: pipecat_daily takes no new session here (phoenix_rest still does)."""
        return self.load_monitor is not None and self.load_monitor.is_overloaded

    def request_shutdown(self) -> None:
        """First call: drain. Second call: end every session now."""
        if self._stop.is_set():
            log.warning("worker.forced_stop")
            self._force.set()
        else:
            log.info(
                "worker.shutdown_requested", drain_timeout_s=self.settings.worker_drain_timeout_s
            )
            self._stop.set()

    async def run(self) -> None:
        s = self.settings
        async with AsyncExitStack() as stack:
            client = build_tavus_client(s, observer=self.metrics.observe_provider)
            stack.push_async_callback(client.aclose)
            monitor = ConversationMonitor(client, interval_s=s.worker_poll_interval_s)
            stack.push_async_callback(monitor.aclose)
            personas = PersonaResolver(client, shared_lock=PersonaLocks(self.broker).hold)
            phoenix = PhoenixRunner(
                client,
                monitor,
                personas,
                default_replica_id=s.tavus_default_replica_id,
                name_prefix=s.worker_session_name_prefix,
                dedupe_scan_pages=s.worker_dedupe_scan_pages,
            )
            runners: dict[ResolvedMode, SessionRunner] = {"phoenix_rest": phoenix}
            daily = self._daily_client(stack)
            unavailable = pipecat_daily_unavailable_reason(s)
            if unavailable is None and daily is not None:
                runners["pipecat_daily"] = await self._pipecat_daily_runner(
                    stack, client, daily, personas
                )
            self.mode_availability = {"phoenix_rest": None, "pipecat_daily": unavailable}
            if "pipecat_daily" in runners and s.worker_daily_breaker_threshold > 0:
                self.daily_breaker = self._daily_breaker()
            modes = ModeResolver(
                runners,
                default_mode=s.tavus_avatar_mode,
                unavailable={"pipecat_daily": unavailable} if unavailable else {},
                breaker=self.daily_breaker,
            )
            await self.broker.connect()
            stack.push_async_callback(self.broker.aclose)
            stack.push_async_callback(self.claims.aclose)  # before the connection closes
            stack.push_async_callback(self.records.aclose)
            self.claims.watch_reconnects()
            self._watch_broker()
            plan = CapacityPlan.from_settings(s, pipecat_daily_available="pipecat_daily" in runners)
            self.capacity = Capacity(
                plan,
                is_overloaded=lambda: self.is_overloaded,
                why_overloaded=lambda: (
                    self.load_monitor.why_overloaded() if self.load_monitor is not None else None
                ),
                on_change=self.capacity_changed,
            )
            await self._start_ops(stack)
            events = EventPublisher(
                self.broker, on_event=self.metrics.observe_event, claims=self.claims
            )
            self.sessions = SessionManager(
                claims=self.claims,
                records=self.records,
                events=events,
                modes=modes,
                worker_id=s.worker_id,
                max_sessions=s.worker_max_sessions,
                max_attempts=s.worker_max_attempts,
                retry_delays_s=s.worker_retry_delays_s,
                on_capacity_change=self.capacity_changed,
                metrics=self.metrics,
                capacity=self.capacity,
                # A start a vanished worker left in flight lands within its HTTP timeouts (and,
                # for pipecat_daily, the pipeline's setup); a redelivered job waits that out.
                in_flight_window_s=s.provider_timeout_s * s.provider_retry_attempts
                + (s.pipeline_setup_timeout_s if unavailable is None else 0.0),
                lease_s=s.worker_session_lease_s,
            )
            self.claims.on_claim_lost = self.sessions.abandon
            self.intake = Intake(
                self.broker,
                self.sessions,
                retry_delays_s=s.worker_retry_delays_s,
                worker_id=s.worker_id,
                # The load gate closes pipecat_daily only (the capacity), not the intake.
                on_dead_letter=self.metrics.dead_lettered,  # type: ignore[arg-type]
                allowed_choices=AllowedChoices.from_settings(s),
                default_max_duration_s=s.worker_default_max_duration_s,
            )
            stack.push_async_callback(self.intake.aclose)
            await ControlListener(self.broker, self.sessions, s.worker_id).start()
            await self.intake.start()
            if s.worker_reaper_interval_s > 0:
                self.reaper = Reaper(
                    broker=self.broker,
                    claims=self.claims,
                    records=self.records,
                    events=events,
                    tavus=client,
                    daily=daily,
                    prefix=s.worker_session_name_prefix,
                    worker_id=s.worker_id,
                    interval_s=s.worker_reaper_interval_s,
                    is_live_here=self.sessions.is_live,
                    grace_s=s.worker_reaper_grace_s,
                    lease_s=s.worker_session_lease_s,
                    was_stopped=self.sessions.was_stopped,
                    adopter=Adopter(
                        phoenix=phoenix,
                        records=self.records,
                        sessions=self.sessions,
                        lease_s=s.worker_session_lease_s,
                    )
                    if s.worker_adopt_sessions
                    else None,
                )
                await self.reaper.watch_leases()
                reaper_task = asyncio.create_task(self.reaper.run(), name="reaper")
                stack.callback(reaper_task.cancel)
            log.info(
                "worker.started",
                worker_id=s.worker_id,
                max_sessions=s.worker_max_sessions,
                broker=s.amqp_url_for_display(),
                tavus=s.tavus_base_url,
                pipecat_daily=modes.why_unavailable("pipecat_daily") or "available",
                status_port=self.status.port if self.status else None,
            )
            self.started.set()
            await self._stop.wait()
            await self._shutdown()

    def _daily_breaker(self) -> DailyBreaker:
        s = self.settings
        return DailyBreaker(
            threshold=s.worker_daily_breaker_threshold,
            cool_down_s=s.worker_daily_breaker_cooldown_s,
            # The longest a probe's start can take (Daily's retries, the pipeline's setup).
            probe_timeout_s=s.provider_timeout_s * s.provider_retry_attempts
            + s.pipeline_setup_timeout_s
            + s.pipeline_avatar_timeout_s,
            on_change=self.metrics.daily_breaker_changed,
        )

    def _daily_client(self, stack: AsyncExitStack) -> DailyClient | None:
        s = self.settings
        if s.daily_api_key is None:
            return None
        daily = DailyClient(
            api_key=s.daily_api_key.get_secret_value(),
            base_url=s.daily_api_url,
            timeout_s=s.provider_timeout_s,
            retry=RetryPolicy(attempts=s.provider_retry_attempts),
            observer=self.metrics.observe_provider,
        )
        stack.push_async_callback(daily.aclose)
        return daily

    async def _pipecat_daily_runner(
        self,
        stack: AsyncExitStack,
        client: TavusClient,
        daily: DailyClient,
        personas: PersonaResolver,
    ) -> SessionRunner:
        from worker.pool import ProcessPool
        from worker.sessions.pipecat_daily import PipecatDailyRunner

        s = self.settings
        assert s.tavus_api_key is not None
        hook = ["--factories", s.worker_pipeline_hook] if s.worker_pipeline_hook else None
        self.pool = ProcessPool(size=s.worker_warm_processes, child_args=hook)
        self.pool.on_warm = self.metrics.process_spawned
        stack.push_async_callback(self.pool.aclose)
        await self.pool.start()
        return PipecatDailyRunner(
            tavus=client,
            daily=daily,
            pool=self.pool,
            personas=personas,
            providers=s.provider_config(),
            tavus_api_key=s.tavus_api_key,
            tavus_base_url=s.tavus_base_url,
            default_replica_id=s.tavus_default_replica_id,
            privacy=s.daily_avatar_privacy,
            name_prefix=s.worker_session_name_prefix,
            setup_timeout_s=s.pipeline_setup_timeout_s,
            avatar_timeout_s=s.pipeline_avatar_timeout_s,
            idle_timeout_s=s.pipeline_idle_timeout_s,
        )

    def _watch_broker(self) -> None:
        connection = self.broker.connection
        assert connection is not None
        connection.close_callbacks.add(lambda *_: self.view.broker_lost())
        connection.reconnect_callbacks.add(lambda *_: self.view.broker_back())

    async def _start_ops(self, stack: AsyncExitStack) -> None:
        """Load monitor and the status server (/healthz, /readyz, /status, /metrics)."""
        s = self.settings
        assert self.capacity is not None
        cpu_threshold = self.capacity.plan.cpu_threshold  # the gate: on where pipecat_daily runs
        if cpu_threshold is not None or s.worker_load_memory_threshold is not None:
            self.load_monitor = LoadMonitor(
                cpu_threshold,
                s.worker_load_memory_threshold,
                on_change=lambda _overloaded: self.capacity_changed(),
            )
            load_task = asyncio.create_task(self.load_monitor.run(), name="load-monitor")
            stack.callback(load_task.cancel)
            stack.push_async_callback(self.load_monitor.aclose)
        if s.worker_status_enabled:
            self.status = StatusServer(
                self.view,
                self.metrics,
                s.worker_status_host,
                s.worker_status_port,
                reconnect_budget_s=s.worker_broker_reconnect_budget_s,
                breaker=self.daily_breaker,
                capacity=self.capacity,
            )
            try:
                await self.status.start()
            except OSError as exc:
                raise StartupError(
                    f"WORKER_STATUS_PORT={s.worker_status_port} cannot be used on "
                    f"{s.worker_status_host} ({exc.strerror or exc}): another process (a second "
                    "worker?) holds it; set WORKER_STATUS_PORT to a free port, or 0 for any free "
                    "port, or WORKER_STATUS_ENABLED=false"
                ) from None
            stack.push_async_callback(self.status.aclose)

    def capacity_changed(self) -> None:
        if self.intake is not None:
            self.intake.capacity_changed()

    async def _shutdown(self) -> None:
        assert self.intake is not None and self.sessions is not None
        await self.intake.stop_accepting()
        drain = asyncio.create_task(self.sessions.drain(self.settings.worker_drain_timeout_s))
        force = asyncio.create_task(self._force.wait())
        done, _ = await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
        if force in done:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(
                    self.sessions.end_all("worker_shutdown"), FORCED_STOP_TIMEOUT_S
                )
        force.cancel()
        log.info("worker.stopped")


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal ends the sessions now)."""
    app = WorkerApp(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt instead
            loop.add_signal_handler(sig, app.request_shutdown)
    await app.run()
