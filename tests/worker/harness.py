"""A scripted environment for worker tests: unique broker names per test, the simulator,
in-process workers, a producer, and a collector of every event the workers publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from pydantic import SecretStr

from tavus.sim import Simulator
from worker.amqp_connection import connect_any
from worker.app import WorkerApp
from worker.broker import QUORUM, Topology
from worker.client_tools import send_stop
from worker.settings import Settings

TAVUS_KEY = "test-tavus-key-0123456789"
DAILY_KEY = "test-daily-key-0123456789"
REPLICA = "r90bbd427f71"


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, Any]
    correlation_id: str | None = None


@dataclass
class Harness:
    url: str
    sim: Simulator
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    events: list[dict[str, Any]] = field(default_factory=list)
    workers: list[tuple[WorkerApp, asyncio.Task[None]]] = field(default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    _drains: list[asyncio.Task[None]] = field(default_factory=list)
    stderr_lines: dict[int, list[str]] = field(default_factory=dict)
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def topo(self) -> Topology:
        return Topology(
            jobs_exchange=f"{self.prefix}.jobs",
            jobs_queue=f"{self.prefix}.sessions",
            events_exchange=f"{self.prefix}.events",
            control_exchange=f"{self.prefix}.control",
            dead_letter_queue=f"{self.prefix}.sessions.dead",
        )

    def settings(self, **overrides: Any) -> Settings:
        topo = self.topo
        values: dict[str, Any] = {
            "tavus_api_key": SecretStr(TAVUS_KEY),
            "tavus_base_url": self.sim.tavus_base_url,
            "tavus_default_replica_id": REPLICA,
            "tavus_avatar_mode": "auto",
            "daily_api_key": None,
            "daily_api_url": self.sim.daily_base_url,
            "amqp_url": SecretStr(self.url),
            "amqp_jobs_exchange": topo.jobs_exchange,
            "amqp_jobs_queue": topo.jobs_queue,
            "amqp_events_exchange": topo.events_exchange,
            "amqp_control_exchange": topo.control_exchange,
            "amqp_dead_letter_queue": topo.dead_letter_queue,
            "worker_id": f"{self.prefix}-w{len(self.workers) + len(self.processes)}",
            "worker_max_sessions": 5,
            "worker_max_attempts": 3,
            "worker_retry_delays_s": [0.2, 0.4],
            "worker_drain_timeout_s": 5.0,
            "worker_poll_interval_s": 0.1,
            "provider_retry_attempts": 2,
            "provider_timeout_s": 5.0,
            "worker_reaper_interval_s": 0,
            "worker_session_lease_s": 2.0,
            "worker_status_port": 0,
            "worker_status_host": "127.0.0.1",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    async def start(self, *, durable_tap: bool = False) -> None:
        """Connect and listen to every event. `durable_tap`: through a quorum queue, so that no
        event is lost while the harness's own node is away (tests on a cluster)."""
        self.connection = await connect_any(self.url, timeout_s=30.0)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.topo.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        if durable_tap:
            queue = await channel.declare_queue(
                f"{self.prefix}.tap", durable=True, arguments=QUORUM
            )
        else:
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "#")
        await queue.consume(self._on_event, no_ack=True)

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        assert message.routing_key == f"session.{event['status']}"
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def env(self, **overrides: Any) -> dict[str, str]:
        """The settings of `settings()` as environment variables, for a worker process."""
        settings = self.settings(**overrides)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TAVUS_", "DAILY_", "AMQP_"))
        }
        for name, value in settings.model_dump().items():
            if value is None:
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            env[name.upper()] = str(value)
        env["LOG_FORMAT"] = "json"
        return env

    async def spawn_worker_process(
        self, *, module: str = "worker.cli", **overrides: Any
    ) -> asyncio.subprocess.Process:
        """A real `avatar-worker run` process; returns once it logs that it consumes jobs.
        Every stderr line it writes is kept in `stderr_lines[pid]`. `module` runs another entry
        point with the same command line (a test's altered worker)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "run",
            env=self.env(**overrides),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.processes.append(proc)
        lines: list[str] = []
        self.stderr_lines[proc.pid] = lines
        started = asyncio.Event()

        async def read() -> None:
            assert proc.stderr is not None
            while line := await proc.stderr.readline():
                text = line.decode(errors="replace")
                lines.append(text)
                if "worker.started" in text:
                    started.set()

        reader = asyncio.create_task(read())
        self._drains.append(reader)
        waiter = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait({reader, waiter}, timeout=45, return_when="FIRST_COMPLETED")
        if waiter not in done:
            waiter.cancel()
            raise AssertionError(
                "worker process did not start within 45 s:\n" + "".join(lines[-20:])
            )
        return proc

    async def start_worker(self, **overrides: Any) -> WorkerApp:
        app = WorkerApp(self.settings(**overrides))
        task = asyncio.create_task(app.run())
        self.workers.append((app, task))
        waiter = asyncio.create_task(app.started.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()
        assert waiter in done, "worker did not start within 20 s"
        return app

    async def stop_worker(self, app: WorkerApp, timeout_s: float = 20) -> None:
        task = next(t for a, t in self.workers if a is app)
        app.request_shutdown()
        await asyncio.wait_for(task, timeout_s)

    async def publish(
        self,
        job: dict[str, Any] | bytes,
        *,
        reply_to: str | None = None,
        headers: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        assert self.connection is not None
        channel = await self.connection.channel(publisher_confirms=True)
        from worker.broker import declare_job_topology

        await declare_job_topology(channel, self.topo)
        exchange = await channel.get_exchange(self.topo.jobs_exchange)
        body = job if isinstance(job, bytes) else json.dumps(job).encode()
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type=content_type,
                headers=headers or {},
                reply_to=reply_to,
                correlation_id=correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.topo.jobs_routing_key,
        )
        await channel.close()

    async def stop_session(self, session_id: str) -> None:
        assert self.connection is not None
        await send_stop(await self.connection.channel(), session_id, "test", self.topo)

    def of(self, session_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["session_id"] == session_id]

    def statuses(self, session_id: str) -> list[str]:
        return [e["status"] for e in self.of(session_id)]

    async def wait_for(
        self, session_id: str, status: str, timeout_s: float = 15.0, count: int = 1
    ) -> dict[str, Any]:
        """The `count`-th event of that status for the session, waiting for it."""

        async def matching() -> dict[str, Any]:
            async with self._changed:
                while True:
                    found = [e for e in self.of(session_id) if e["status"] == status]
                    if len(found) >= count:
                        return found[count - 1]
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(matching(), timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"no {status!r} event for {session_id} within {timeout_s} s; "
                f"saw {self.statuses(session_id)}"
            ) from None

    async def dead_letters(self, expected: int, timeout_s: float = 10.0) -> list[Delivery]:
        """Read `expected` messages off the dead-letter queue (acking them)."""
        assert self.connection is not None
        channel = await self.connection.channel()
        queue = await channel.declare_queue(
            self.topo.dead_letter_queue, durable=True, arguments=QUORUM
        )
        found: list[Delivery] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(found) < expected and loop.time() < deadline:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            found.append(
                Delivery(message.body, dict(message.headers or {}), message.correlation_id)
            )
        await channel.close()
        return found

    async def queue_depth(self, name: str | None = None) -> int:
        assert self.connection is not None
        channel = await self.connection.channel()
        queue = await channel.declare_queue(name or self.topo.jobs_queue, passive=True)
        count = queue.declaration_result.message_count
        await channel.close()
        return int(count or 0)

    def created_conversations(self, session_id: str) -> list[str]:
        name = f"aw-{session_id}"
        return [
            c.conversation_id
            for c in self.sim.conversations.values()
            if c.request.get("conversation_name") == name
        ]

    async def aclose(self) -> None:
        for proc in self.processes:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for app, task in self.workers:
            if not task.done():
                app.request_shutdown()
                app.request_shutdown()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)
        if self.connection is not None:
            channel = await self.connection.channel()
            topo = self.topo
            for queue in (
                f"{self.prefix}.tap",
                topo.jobs_queue,
                topo.dead_letter_queue,
                topo.lost_queue,
                *(topo.retry_queue(d) for d in (0.2, 0.4)),
            ):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
            for exchange in (topo.jobs_exchange, topo.events_exchange, topo.control_exchange):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(exchange)
            await self.connection.close()


@asynccontextmanager
async def harness(url: str, sim: Simulator) -> AsyncIterator[Harness]:
    h = Harness(url, sim)
    await h.start()
    try:
        yield h
    finally:
        await h.aclose()


async def run_cli_once(
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float = 60,
    module: str = "worker.cli",
) -> tuple[int, str, str]:
    """`python -m <module> ARGS` with exactly `env`, run to its end: (exit code, stdout, stderr).
    A process still running after `timeout_s` is killed and the test fails, showing its output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    communicating = asyncio.ensure_future(proc.communicate())
    done, _ = await asyncio.wait({communicating}, timeout=timeout_s)
    if not done:
        proc.kill()
        out, err = await communicating
        raise AssertionError(
            f"`{module} {' '.join(args)}` still ran after {timeout_s} s; its output:\n"
            + (out + err).decode(errors="replace")[-3000:]
        )
    out, err = communicating.result()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def job(session_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid job body with a fresh session id."""
    return {"session_id": session_id or f"s-{uuid.uuid4().hex[:10]}", **fields}
