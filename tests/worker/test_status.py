"""A running worker as an operator sees it: health, readiness, status, metrics, load-aware intake."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.worker.harness import Harness, job
from worker.app import WorkerApp
from worker.ops.load import LoadMonitor, LoadSample

pytestmark = pytest.mark.broker


async def get(app: WorkerApp, path: str) -> httpx.Response:
    assert app.status is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.status.port}") as client:
        return await client.get(path)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # Prometheus sorts them
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_and_status_follow_a_session(h: Harness) -> None:
    """/status lists the live session; the started/live/ended series move with it."""
    app = await h.start_worker()
    assert (await get(app, "/healthz")).status_code == 200
    assert (await get(app, "/readyz")).text.strip() == "ready"
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready")
    text = (await get(app, "/metrics")).text
    assert metric(text, "avatar_worker_sessions_started_total", mode="phoenix_rest") == 1
    assert metric(text, "avatar_worker_sessions_live", mode="phoenix_rest") == 1
    assert (
        metric(
            text,
            "avatar_worker_job_to_ready_seconds_count",
            mode="phoenix_rest",
            cold_start="false",
        )
        == 1
    )
    assert 'provider="tavus"' in text
    status = (await get(app, "/status")).json()
    assert [s[0] if isinstance(s, list) else s["session_id"] for s in status["sessions"]] == [sid]
    await h.stop_session(sid)
    await h.wait_for(sid, "ended")
    text = (await get(app, "/metrics")).text
    assert (
        metric(text, "avatar_worker_sessions_ended_total", mode="phoenix_rest", reason="stopped")
        == 1
    )
    assert metric(text, "avatar_worker_sessions_live", mode="phoenix_rest") == 0


async def test_readyz_says_full_and_draining(h: Harness) -> None:
    """/readyz is 503 "full" at capacity and "draining" after SIGTERM; /healthz stays 200."""
    app = await h.start_worker(worker_max_sessions=1, worker_drain_timeout_s=30)
    body = job()
    await h.publish(body)
    await h.wait_for(body["session_id"], "ready")
    full = await get(app, "/readyz")
    assert full.status_code == 503 and "full" in full.text
    app.request_shutdown()
    await asyncio.sleep(0.2)
    draining = await get(app, "/readyz")
    assert draining.status_code == 503 and "draining" in draining.text
    assert (await get(app, "/healthz")).status_code == 200
    await h.stop_session(body["session_id"])


async def test_dead_letters_are_counted_by_kind(h: Harness) -> None:
    """An invalid job shows up as jobs_dead_lettered_total{kind="invalid_job"}."""
    app = await h.start_worker()
    await h.publish(b"not json")
    await h.dead_letters(1)
    text = (await get(app, "/metrics")).text
    assert metric(text, "avatar_worker_jobs_dead_lettered_total", kind="invalid_job") == 1


async def test_overloaded_worker_still_takes_phoenix_rest_jobs(h: Harness) -> None:
    """Above the CPU threshold the load gate closes pipecat_daily only: /readyz still says ready
    and a phoenix_rest job starts at once (it costs the host next to nothing)."""
    app = await h.start_worker()
    cpu = [0.95]
    app.load_monitor = LoadMonitor(
        0.7,
        None,
        window=1,
        sampler=lambda: LoadSample(cpu=cpu[0], memory=0.1),
        on_change=lambda _overloaded: app.capacity_changed(),
    )
    app.load_monitor.sample()
    await asyncio.sleep(0.2)
    assert app.is_overloaded
    assert (await get(app, "/readyz")).status_code == 200
    body = job(mode="phoenix_rest")
    await h.publish(body)
    await h.wait_for(body["session_id"], "ready")
