"""`avatar-worker demo`: one session end to end — simulator (unless real keys are set), a worker and
a job on the local RabbitMQ — printing accepted → ready (conversation URL) → ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import aio_pika
from pydantic import SecretStr

from worker.amqp_connection import connect_any
from worker.app import WorkerApp
from worker.broker import Topology
from worker.client_tools import describe_event, follow_job, send_stop
from worker.contract import SessionJob
from worker.settings import Settings

SIM_TAVUS_KEY = "sim-tavus-key"
SIM_DAILY_KEY = "sim-daily-key"
DEMO_REPLICA = "r90bbd427f71"


@asynccontextmanager
async def _providers(settings: Settings, out: TextIO) -> AsyncIterator[Settings]:
    """The simulator's URLs and keys, unless real provider keys are configured."""
    if settings.tavus_api_key is not None and "TAVUS_API_KEY" in os.environ:
        out.write(f"providers: real Tavus at {settings.tavus_base_url}\n")
        yield settings
        return
    from tavus.sim import Simulator

    sim = Simulator(tavus_api_keys={SIM_TAVUS_KEY}, daily_api_keys={SIM_DAILY_KEY})
    async with sim.running(host="127.0.0.1", port=0) as running:
        out.write(f"providers: simulator at {running.tavus_base_url} (no keys needed)\n")
        yield settings.model_copy(
            update={
                "tavus_api_key": SecretStr(SIM_TAVUS_KEY),
                "tavus_base_url": running.tavus_base_url,
                "daily_api_key": SecretStr(SIM_DAILY_KEY),
                "daily_api_url": running.daily_base_url,
                "tavus_default_replica_id": settings.tavus_default_replica_id or DEMO_REPLICA,
            }
        )


async def run_demo(settings: Settings, *, hold_s: float = 2.0, out: TextIO = sys.stdout) -> int:
    """Run one demo session; 0 when it went accepted → ready → ended."""
    demo_settings = settings.model_copy(
        update={
            "worker_id": f"demo-{uuid.uuid4().hex[:6]}",
            "worker_poll_interval_s": 0.5,
            "worker_drain_timeout_s": 5.0,
        }
    )
    try:
        connection = await connect_any(settings.amqp_nodes(), timeout_s=5)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        out.write(
            f"cannot reach RabbitMQ at {settings.amqp_url_for_display()} ({type(exc).__name__}).\n"
            "Start one with `rabbitmq-server -detached` (Debian: apt-get install rabbitmq-server) "
            "or `docker compose up -d rabbitmq`, or set AMQP_URL.\n"
        )
        return 2
    async with connection, _providers(demo_settings, out) as provider_settings:
        app = WorkerApp(provider_settings)
        worker = asyncio.create_task(app.run())
        await asyncio.wait(
            {worker, asyncio.create_task(app.started.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if worker.done():
            worker.result()  # raises the start-up error
        statuses = await _drive_one_session(connection, provider_settings, hold_s, out)
        app.request_shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    ok = statuses[:1] == ["accepted"] and "ready" in statuses and statuses[-1:] == ["ended"]
    out.write(("demo ok: " if ok else "demo FAILED: ") + " → ".join(statuses) + "\n")
    return 0 if ok else 1


async def _drive_one_session(
    connection: aio_pika.abc.AbstractRobustConnection,
    settings: Settings,
    hold_s: float,
    out: TextIO,
) -> list[str]:
    session_id = f"demo-{uuid.uuid4().hex[:8]}"
    job = SessionJob(
        session_id=session_id,
        mode="auto",
        custom_greeting="Hi! I'm your demo avatar.",
        max_duration_s=300,
        metadata={"source": "avatar-worker demo"},
    )
    channel = await connection.channel()
    statuses: list[str] = []
    async for event in follow_job(
        channel, job, topology=Topology.from_settings(settings), timeout_s=60 + hold_s
    ):
        statuses.append(event["status"])
        out.write(describe_event(event) + "\n")
        if event["status"] == "ready":
            out.write(
                f"open {event.get('conversation_url') or event.get('room_url')} to join; "
                f"stopping the session in {hold_s:.0f} s\n"
            )
            await asyncio.sleep(hold_s)
            await send_stop(channel, session_id, "demo over", Topology.from_settings(settings))
    return statuses
