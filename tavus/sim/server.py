"""The simulator as a whole: ``Simulator`` (in-process, for tests: state, faults, calls, clock)
and ``serve`` (the blocking entry point behind ``avatar-worker sim``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

import structlog
from aiohttp import web

from tavus.sim import admin, daily_api, tavus_catalog, tavus_conversations
from tavus.sim.clock import Clock, system_clock
from tavus.sim.context import CONTEXT, RecordedCall, SimConfig, SimContext
from tavus.sim.faults import Endpoint, Faults
from tavus.sim.http_layer import provider_middleware
from tavus.sim.lifecycle import Lifecycle, WebhookDelivery
from tavus.sim.state import Conversation, Persona, Room, SimState

log = structlog.get_logger(__name__)

DEFAULT_TAVUS_KEYS = frozenset({"sim-tavus-key"})
DEFAULT_DAILY_KEYS = frozenset({"sim-daily-key"})


class Simulator:
    """A local Tavus v2 + Daily v1 provider on one port; see the package docstring for usage."""

    def __init__(
        self,
        *,
        tavus_api_keys: Iterable[str] | None = None,
        daily_api_keys: Iterable[str] | None = None,
        clock: Clock | None = None,
        daily_domain: str = "avatar-sim",
        daily_rate_limits: bool = True,
        daily_retry_after: bool = False,
        max_concurrent_conversations: int | None = None,
        out_of_credits: bool = False,
        replica_join_delay_s: float = 0.5,
        sweep_interval_s: float = 0.2,
        public_base_url: str | None = None,
    ) -> None:
        self.clock: Clock = clock or system_clock
        self.sweep_interval_s = sweep_interval_s
        self._public_base_url = public_base_url
        config = SimConfig(
            tavus_api_keys=frozenset(tavus_api_keys or DEFAULT_TAVUS_KEYS),
            daily_api_keys=frozenset(daily_api_keys or DEFAULT_DAILY_KEYS),
            daily_domain=daily_domain,
            is_rate_limited=daily_rate_limits,
            sends_retry_after=daily_retry_after,
        )
        state = SimState()
        self.ctx = SimContext(
            config=config,
            clock=self.clock,
            state=state,
            faults=Faults(
                concurrency_cap=max_concurrent_conversations, is_out_of_credits=out_of_credits
            ),
            lifecycle=Lifecycle(state, self.clock, replica_join_delay_s=replica_join_delay_s),
        )
        self.app = self._build_app()
        self.base_url = ""

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[admin.admin_errors, provider_middleware])
        app[CONTEXT] = self.ctx
        tavus_conversations.add_routes(app)
        tavus_catalog.add_routes(app)
        daily_api.add_routes(app)
        admin.add_routes(app)
        app.cleanup_ctx.append(self._background_tasks)
        return app

    async def _background_tasks(self, _app: web.Application) -> AsyncIterator[None]:
        lifecycle = self.ctx.lifecycle
        tasks = [
            asyncio.create_task(lifecycle.run_sweeper(self.sweep_interval_s), name="sim.sweeper"),
            asyncio.create_task(lifecycle.run_webhooks(), name="sim.webhooks"),
        ]
        yield
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, Exception):  # a bug in the simulator: make it visible
                log.error("sim.background_task_failed", task=task.get_name(), error=repr(outcome))

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Simulator]:
        """Serve on ``host:port`` (0: an ephemeral port) until the block exits."""
        self.app = self._build_app()  # an aiohttp app is bound to one loop: fresh per run
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family)
            site = web.SockSite(runner, sock)
            await site.start()
            bound_port = sock.getsockname()[1]
            url_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
            url_host = f"[{url_host}]" if ":" in url_host else url_host
            self.base_url = f"http://{url_host}:{bound_port}"
            self.ctx.config.public_base_url = self._public_base_url or self.base_url
            yield self
        finally:
            await runner.cleanup()

    @property
    def tavus_base_url(self) -> str:
        return f"{self.base_url}/v2"

    @property
    def daily_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def faults(self) -> Faults:
        return self.ctx.faults

    @property
    def calls(self) -> list[RecordedCall]:
        return self.ctx.calls

    @property
    def state(self) -> SimState:
        return self.ctx.state

    @property
    def conversations(self) -> dict[str, Conversation]:
        return self.ctx.state.conversations

    @property
    def personas(self) -> dict[str, Persona]:
        return self.ctx.state.personas

    @property
    def replicas(self) -> dict[str, dict[str, Any]]:
        return self.ctx.state.replicas

    @property
    def rooms(self) -> dict[str, Room]:
        return self.ctx.state.rooms

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        return self.ctx.lifecycle.deliveries

    def set_rate_limits(self, *, enabled: bool, retry_after: bool | None = None) -> None:
        """Turn Daily's rate limits on or off (and the optional Retry-After header on 429)."""
        self.ctx.config.is_rate_limited = enabled
        if retry_after is not None:
            self.ctx.config.sends_retry_after = retry_after

    def join(self, conversation_id: str) -> None:
        """The simulated human joins the conversation's room."""
        self.ctx.lifecycle.join(self.conversations[conversation_id])

    def leave(self, conversation_id: str) -> None:
        """The simulated human leaves; with participant_left_timeout 0 the call ends at once."""
        self.ctx.lifecycle.leave(self.conversations[conversation_id])
        self.ctx.lifecycle.sweep()

    def say(self, conversation_id: str, role: str, content: str) -> None:
        """The user (``role`` "user") or the replica ("assistant") says something: it goes into
        the transcript Tavus posts when the conversation ends."""
        self.ctx.lifecycle.say(self.conversations[conversation_id], role, content)

    def sweep(self) -> list[str]:
        """Run the timers now (the background task does this every ``sweep_interval_s``)."""
        return self.ctx.lifecycle.sweep()

    async def drain_webhooks(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued webhook has been attempted."""
        await self.ctx.lifecycle.drain_webhooks(timeout_s)

    def calls_to(self, endpoint: str) -> list[RecordedCall]:
        """Recorded calls matching "METHOD /path/pattern" (same syntax as the faults)."""
        parsed = Endpoint.parse(endpoint)
        return [c for c in self.calls if parsed.matches(c.method, c.path)]

    def reset(self) -> None:
        """Back to the seeded catalogue: no conversations, rooms, faults or recorded calls."""
        self.ctx.reset()


async def serve(
    host: str,
    port: int,
    *,
    tavus_api_keys: Iterable[str] | None = None,
    daily_api_keys: Iterable[str] | None = None,
    **options: Any,
) -> None:
    """Run the simulator on ``host:port`` until cancelled, printing its base URLs and keys."""
    simulator = Simulator(tavus_api_keys=tavus_api_keys, daily_api_keys=daily_api_keys, **options)
    async with simulator.running(host=host, port=port) as sim:
        config = sim.ctx.config
        tavus_keys = ", ".join(sorted(config.tavus_api_keys))
        daily_keys = ", ".join(sorted(config.daily_api_keys))
        print(f"Tavus simulator: {sim.tavus_base_url}  keys: {tavus_keys}")
        print(f"Daily simulator: {sim.daily_base_url}  keys: {daily_keys}")
        print(f"Control:         {sim.base_url}/_sim/state", flush=True)
        log.info(
            "sim.started", tavus_base_url=sim.tavus_base_url, daily_base_url=sim.daily_base_url
        )
        await asyncio.Event().wait()
