"""The status server's answers in each worker state, as an operator or an orchestrator sees them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.ops.fake_worker import FakeWorkerView
from tests.ops.promtext import value
from worker.ops.metrics import Metrics
from worker.ops.status import StatusServer

ROOT = Path(__file__).resolve().parents[2]


class Served:
    def __init__(self, view: FakeWorkerView, metrics: Metrics, server: StatusServer) -> None:
        self.view, self.metrics, self.server = view, metrics, server
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5)

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """A StatusServer on an ephemeral port over a fake worker that is ready."""
    view, metrics = FakeWorkerView(), Metrics()
    server = StatusServer(view, metrics, "127.0.0.1", 0, reconnect_budget_s=60)
    await server.start()
    s = Served(view, metrics, server)
    try:
        yield s
    finally:
        await s.http.aclose()
        await server.aclose()


async def test_a_ready_worker_is_healthy_and_ready(served: Served) -> None:
    """With free slots and a broker, /healthz says ok and /readyz says ready."""
    health, ready = await served.get("/healthz"), await served.get("/readyz")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert (ready.status_code, ready.text) == (200, "ready\n")


async def test_a_full_worker_is_healthy_but_not_ready(served: Served) -> None:
    """No free slot: /readyz 503 says full, /healthz stays 200 (a restart would not help)."""
    served.view.max_sessions = 2
    served.view.run_sessions(
        ("a", "phoenix_rest", 3.0, "ready"), ("b", "phoenix_rest", 1.0, "ready")
    )
    ready = await served.get("/readyz")
    assert (ready.status_code, ready.text) == (503, "not ready: full (2 of 2 sessions)\n")
    assert (await served.get("/healthz")).status_code == 200


async def test_an_overloaded_worker_says_so(served: Served) -> None:
    """Full with slots free means the load monitor paused intake: /readyz names the load."""
    served.view.is_full, served.view.load = True, 0.83
    ready = await served.get("/readyz")
    assert (ready.status_code, ready.text) == (503, "not ready: overloaded (load 0.83)\n")


async def test_a_draining_worker_is_not_ready(served: Served) -> None:
    """After SIGTERM /readyz answers 503 "draining" while /healthz stays 200."""
    served.view.is_draining = True
    ready = await served.get("/readyz")
    assert (ready.status_code, ready.text) == (503, "not ready: draining\n")
    assert (await served.get("/healthz")).status_code == 200


async def test_a_short_broker_outage_is_not_ready_but_healthy(served: Served) -> None:
    """Within the reconnect budget the worker is only not ready (aio-pika reconnects by itself)."""
    served.view.lose_broker(down_for_s=12)
    ready = await served.get("/readyz")
    assert (ready.status_code, ready.text) == (503, "not ready: broker disconnected\n")
    assert (await served.get("/healthz")).text == "ok\n"


async def test_a_long_broker_outage_is_unhealthy(served: Served) -> None:
    """Past the reconnect budget /healthz answers 503 and says for how long, so it gets restarted."""
    served.view.lose_broker(down_for_s=75)
    health = await served.get("/healthz")
    assert health.status_code == 503
    assert health.text == "unhealthy: broker disconnected for 75 s (reconnect budget 60 s)\n"


async def test_a_broken_pool_is_unhealthy(served: Served) -> None:
    """A process pool that cannot start processes makes /healthz 503."""
    served.view.is_pool_broken = True
    health = await served.get("/healthz")
    assert (health.status_code, health.text) == (503, "unhealthy: session process pool is broken\n")


async def test_status_json_describes_the_worker(served: Served) -> None:
    """/status reports identity, state, capacity, modes (with reasons) and each live session."""
    served.view.run_sessions(("call-1", "phoenix_rest", 12.345, "ready"))
    served.view.is_draining = True
    body = (await served.get("/status")).json()
    assert body["worker_id"] == "w-test-1"
    assert body["version"] == "0.1.0"
    assert body["healthy"] is True
    assert body["ready"] is False
    assert body["problems"] == ["draining"]
    assert body["broker"] == {"connected": True, "down_for_s": None}
    assert (body["max_sessions"], body["free_slots"], body["warm_processes"]) == (10, 9, 2)
    assert body["modes"] == {
        "phoenix_rest": {"available": True, "reason": None},
        "pipecat_daily": {"available": False, "reason": "DAILY_API_KEY is not set"},
    }
    assert body["sessions"] == [
        {"session_id": "call-1", "mode": "phoenix_rest", "age_s": 12.3, "state": "ready"}
    ]


async def test_metrics_follow_a_session(served: Served) -> None:
    """/metrics shows the counters and live gauge change as a session goes accepted → ready → ended."""
    m, view = served.metrics, served.view
    base = {"session_id": "call-1", "worker_id": "w", "attempt": 1, "mode": "phoenix_rest"}
    mode = {"mode": "phoenix_rest"}

    async def scrape() -> bytes:
        response = await served.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        return response.content

    m.observe_event({**base, "status": "accepted"})
    view.run_sessions(("call-1", None, 0.1, "starting"))
    page = await scrape()
    assert value(page, "avatar_worker_sessions_accepted_total", **mode) == 1
    assert value(page, "avatar_worker_sessions_started_total", **mode) == 0
    assert value(page, "avatar_worker_sessions_live", mode="unknown") == 1
    assert value(page, "avatar_worker_free_slots") == 9

    m.observe_event({**base, "status": "ready"})
    view.run_sessions(("call-1", "phoenix_rest", 3.0, "ready"))
    page = await scrape()
    assert value(page, "avatar_worker_sessions_started_total", **mode) == 1
    assert value(page, "avatar_worker_sessions_live", **mode) == 1
    assert value(page, "avatar_worker_sessions_live", mode="unknown") == 0

    m.observe_event({**base, "status": "ended", "reason": "stopped", "duration_s": 30.0})
    view.run_sessions()
    page = await scrape()
    assert value(page, "avatar_worker_sessions_ended_total", reason="stopped", **mode) == 1
    assert value(page, "avatar_worker_sessions_live", **mode) == 0
    assert value(page, "avatar_worker_free_slots") == 10
    assert value(page, "avatar_worker_broker_connected") == 1


async def test_an_unknown_path_is_404(served: Served) -> None:
    """Only the four endpoints exist."""
    assert (await served.get("/admin")).status_code == 404


async def test_port_zero_picks_a_port_and_aclose_is_idempotent() -> None:
    """port=0 binds a free port (then `.port`); closing twice is harmless and frees the port."""
    server = StatusServer(FakeWorkerView(), Metrics(), "127.0.0.1", 0)
    await server.start()
    port = server.port
    assert port is not None and port > 0
    await server.aclose()
    await server.aclose()
    again = StatusServer(FakeWorkerView(), Metrics(), "127.0.0.1", port)
    await again.start()
    await again.aclose()


async def test_a_taken_port_fails_start() -> None:
    """Starting on a port already in use raises OSError (the worker then refuses to start)."""
    first = StatusServer(FakeWorkerView(), Metrics(), "127.0.0.1", 0)
    await first.start()
    try:
        second = StatusServer(FakeWorkerView(), Metrics(), "127.0.0.1", first.port or 0)
        with pytest.raises(OSError):
            await second.start()
    finally:
        await first.aclose()


def dockerfile_healthcheck() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form) as an argv."""
    import json

    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK"))
    argv = json.loads(line[line.index("CMD") + 3 :].strip())
    assert isinstance(argv, list)
    return [str(a) for a in argv]


async def run_healthcheck(port: int) -> int:
    argv = dockerfile_healthcheck()
    env = {**os.environ, "WORKER_STATUS_PORT": str(port)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 30)


async def test_the_image_healthcheck_follows_healthz(served: Served) -> None:
    """The Dockerfile's HEALTHCHECK command exits 0 on a healthy worker and non-zero on a 503."""
    assert served.server.port is not None
    assert await run_healthcheck(served.server.port) == 0
    served.view.is_pool_broken = True
    assert await run_healthcheck(served.server.port) != 0
