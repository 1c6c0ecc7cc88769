"""The composition root: builds the worker from Settings (clients, broker, runners) in an
AsyncExitStack, runs it, and owns the signals (first: drain; second: end sessions now and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from contextlib import AsyncExitStack

import structlog

from tavus.client import TavusClient
from tavus.resolve import PersonaResolver
from worker.broker import Broker, Topology
from worker.contract import ResolvedMode
from worker.control import ControlListener
from worker.events import EventPublisher
from worker.intake import Intake
from worker.manager import SessionManager
from worker.modes import ModeResolver
from worker.sessions.base import SessionRunner
from worker.sessions.monitor import ConversationMonitor
from worker.sessions.phoenix import PhoenixRunner
from worker.settings import Settings

log = structlog.get_logger("worker.app")

FORCED_STOP_TIMEOUT_S = 5.0


def pipecat_daily_unavailable_reason(settings: Settings) -> str:
    """Why this worker cannot run pipecat_daily sessions."""
    from pipelines.availability import daily_availability

    ok, reason = daily_availability()
    if not ok:
        return reason or "daily-python cannot be imported"
    if settings.daily_api_key is None:
        return "DAILY_API_KEY is not set"
    return "the pipecat_daily runner is not enabled in this build yet"


def build_tavus_client(settings: Settings) -> TavusClient:
    from tavus._http import RetryPolicy

    if settings.tavus_api_key is None:
        raise SystemExit(
            "TAVUS_API_KEY is not set: the worker cannot start Tavus sessions without it"
        )
    return TavusClient(
        api_key=settings.tavus_api_key.get_secret_value(),
        base_url=settings.tavus_base_url,
        timeout_s=settings.provider_timeout_s,
        retry=RetryPolicy(attempts=settings.provider_retry_attempts),
    )


class WorkerApp:
    """One worker process: consumes jobs, runs sessions, drains on SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = Broker(settings.amqp_url.get_secret_value(), Topology.from_settings(settings))
        self.sessions: SessionManager | None = None
        self.intake: Intake | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self.started = asyncio.Event()

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
            client = build_tavus_client(s)
            stack.push_async_callback(client.aclose)
            monitor = ConversationMonitor(client, interval_s=s.worker_poll_interval_s)
            stack.push_async_callback(monitor.aclose)
            runners: dict[ResolvedMode, SessionRunner] = {
                "phoenix_rest": PhoenixRunner(
                    client,
                    monitor,
                    PersonaResolver(client),
                    default_replica_id=s.tavus_default_replica_id,
                    name_prefix=s.worker_session_name_prefix,
                )
            }
            modes = ModeResolver(
                runners,
                default_mode=s.tavus_avatar_mode,
                unavailable={"pipecat_daily": pipecat_daily_unavailable_reason(s)},
            )
            await self.broker.connect()
            stack.push_async_callback(self.broker.aclose)
            self.sessions = SessionManager(
                broker=self.broker,
                events=EventPublisher(self.broker),
                modes=modes,
                worker_id=s.worker_id,
                max_sessions=s.worker_max_sessions,
                max_attempts=s.worker_max_attempts,
                retry_delays_s=s.worker_retry_delays_s,
                on_capacity_change=self._capacity_changed,
            )
            self.intake = Intake(
                self.broker,
                self.sessions,
                retry_delays_s=s.worker_retry_delays_s,
                worker_id=s.worker_id,
            )
            stack.push_async_callback(self.intake.aclose)
            await ControlListener(self.broker, self.sessions, s.worker_id).start()
            await self.intake.start()
            log.info(
                "worker.started",
                worker_id=s.worker_id,
                max_sessions=s.worker_max_sessions,
                broker=s.amqp_url_for_display(),
                tavus=s.tavus_base_url,
                pipecat_daily=modes.why_unavailable("pipecat_daily") or "available",
            )
            self.started.set()
            await self._stop.wait()
            await self._shutdown()

    def _capacity_changed(self) -> None:
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
