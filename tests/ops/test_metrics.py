"""The avatar_worker_* series: what a scrape shows after the events and calls a worker sees."""

from __future__ import annotations

from typing import Any

import pytest

from tavus._retry import RetryPolicy
from tavus.client import TavusClient
from tavus.errors import AuthError
from tests.ops.promtext import value
from worker.ops.metrics import Metrics


def event(status: str, **fields: Any) -> dict[str, Any]:
    """A published contract event, as the worker serialises it."""
    return {
        "session_id": "call-1",
        "at": "2026-11-22T04:00:00.000Z",
        "worker_id": "w-1",
        "attempt": 1,
        "metadata": {},
        "mode": "phoenix_rest",
        "status": status,
        **fields,
    }


def test_a_session_lifecycle_moves_the_counters() -> None:
    """accepted → ready → ended counts one accepted, one started and one ended (by reason) session
    and records its duration."""
    metrics = Metrics()
    metrics.observe_event(event("accepted"))
    metrics.observe_event(event("ready", conversation_url="http://sim/rooms/c1"))
    metrics.observe_event(event("ended", reason="participant_left", duration_s=42.5))
    page = metrics.render()
    mode = {"mode": "phoenix_rest"}
    assert value(page, "avatar_worker_sessions_accepted_total", **mode) == 1
    assert value(page, "avatar_worker_sessions_started_total", **mode) == 1
    assert value(page, "avatar_worker_sessions_ended_total", reason="participant_left", **mode) == 1
    assert value(page, "avatar_worker_session_duration_seconds_count", **mode) == 1
    assert value(page, "avatar_worker_session_duration_seconds_sum", **mode) == 42.5
    assert value(page, "avatar_worker_session_duration_seconds_bucket", le="60.0", **mode) == 1


def test_failures_retries_and_expiry_are_counted_by_code() -> None:
    """failed counts by mode and error code (mode "unknown" before it was resolved), retrying
    by code, expired on its own."""
    metrics = Metrics()
    error = {"code": "tavus_unavailable", "message": "Tavus is down", "retryable": True}
    metrics.observe_event(event("retrying", error=error, delay_s=2.0))
    metrics.observe_event(event("retrying", error=error, delay_s=10.0))
    metrics.observe_event(
        event(
            "failed",
            mode=None,
            error={"code": "mode_unavailable", "message": "no", "retryable": False},
        )
    )
    metrics.observe_event(event("expired", not_after="2026-11-22T03:00:00Z"))
    page = metrics.render()
    assert value(page, "avatar_worker_session_retries_total", code="tavus_unavailable") == 2
    assert (
        value(page, "avatar_worker_sessions_failed_total", mode="unknown", code="mode_unavailable")
        == 1
    )
    assert value(page, "avatar_worker_jobs_expired_total") == 1


def test_series_exist_at_zero_before_anything_happens() -> None:
    """A fresh worker already exports its per-mode and dead-letter series at 0 (rate() works)."""
    page = Metrics().render()
    for kind in ("invalid_job", "exhausted", "internal"):
        assert value(page, "avatar_worker_jobs_dead_lettered_total", kind=kind) == 0
    for mode in ("phoenix_rest", "pipecat_daily"):
        assert value(page, "avatar_worker_sessions_live", mode=mode) == 0
        assert value(page, "avatar_worker_sessions_accepted_total", mode=mode) == 0


def test_each_metrics_object_has_its_own_registry() -> None:
    """Two Metrics never share a series (and creating many raises no duplicate error)."""
    first, second = Metrics(), Metrics()
    first.dead_lettered("invalid_job")
    assert value(first.render(), "avatar_worker_jobs_dead_lettered_total", kind="invalid_job") == 1
    assert value(second.render(), "avatar_worker_jobs_dead_lettered_total", kind="invalid_job") == 0


def test_ready_latency_spawn_time_and_gauges() -> None:
    """Job-to-ready latency by mode and cold start, spawn time, and the state gauges as set."""
    metrics = Metrics()
    metrics.observe_ready_latency("pipecat_daily", 4.2, cold_start=True)
    metrics.observe_ready_latency("phoenix_rest", 1.1, cold_start=False)
    metrics.process_spawned(1.7)
    metrics.set_gauges(
        sessions_by_mode={"phoenix_rest": 3, "unknown": 1},
        warm_processes=2,
        load=0.42,
        free_slots=6,
        max_sessions=10,
        is_draining=True,
        is_broker_connected=False,
    )
    page = metrics.render()
    cold = {"mode": "pipecat_daily", "cold_start": "true"}
    assert value(page, "avatar_worker_job_to_ready_seconds_count", **cold) == 1
    assert value(page, "avatar_worker_job_to_ready_seconds_bucket", le="5.0", **cold) == 1
    assert value(page, "avatar_worker_job_to_ready_seconds_bucket", le="3.0", **cold) == 0
    assert (
        value(
            page,
            "avatar_worker_job_to_ready_seconds_count",
            mode="phoenix_rest",
            cold_start="false",
        )
        == 1
    )
    assert value(page, "avatar_worker_process_spawn_seconds_count") == 1
    assert value(page, "avatar_worker_sessions_live", mode="phoenix_rest") == 3
    assert value(page, "avatar_worker_sessions_live", mode="pipecat_daily") == 0
    assert value(page, "avatar_worker_sessions_live", mode="unknown") == 1
    assert value(page, "avatar_worker_warm_processes") == 2
    assert value(page, "avatar_worker_load") == 0.42
    assert value(page, "avatar_worker_free_slots") == 6
    assert value(page, "avatar_worker_max_sessions") == 10
    assert value(page, "avatar_worker_draining") == 1
    assert value(page, "avatar_worker_broker_connected") == 0
    metrics.set_gauges(sessions_by_mode={})
    assert value(metrics.render(), "avatar_worker_sessions_live", mode="unknown") == 0


def test_provider_errors_by_status_and_transport() -> None:
    """Every attempt lands in the latency histogram; 4xx/5xx and no-answer count as errors."""
    metrics = Metrics()
    metrics.observe_provider("tavus", "/conversations", 201, 0.3)
    metrics.observe_provider("tavus", "/conversations", 503, 0.2)
    metrics.observe_provider("daily", "/rooms/{name}", None, 10.0)
    page = metrics.render()
    where = {"provider": "tavus", "endpoint": "/conversations"}
    assert value(page, "avatar_worker_provider_request_seconds_count", **where) == 2
    assert value(page, "avatar_worker_provider_errors_total", status="503", **where) == 1
    assert value(page, "avatar_worker_provider_errors_total", status="201", **where) is None
    assert (
        value(
            page,
            "avatar_worker_provider_errors_total",
            provider="daily",
            endpoint="/rooms/{name}",
            status="transport",
        )
        == 1
    )


async def test_observe_provider_is_the_clients_observer(sim: Any) -> None:
    """Passed as TavusClient's observer, it records real calls by endpoint template, a 401 too."""
    metrics = Metrics()
    async with TavusClient(
        api_key="test-tavus-key-0123456789",
        base_url=sim.tavus_base_url,
        retry=RetryPolicy.instant(),
        observer=metrics.observe_provider,
    ) as client:
        await client.get_replica("r90bbd427f71")
    async with TavusClient(
        api_key="wrong-key-0123456789",
        base_url=sim.tavus_base_url,
        retry=RetryPolicy.instant(),
        observer=metrics.observe_provider,
    ) as bad:
        with pytest.raises(AuthError):
            await bad.list_replicas(limit=1)
    page = metrics.render()
    replica = {"provider": "tavus", "endpoint": "/replicas/{replica_id}"}
    assert value(page, "avatar_worker_provider_request_seconds_count", **replica) == 1
    assert (
        value(
            page,
            "avatar_worker_provider_errors_total",
            provider="tavus",
            endpoint="/replicas",
            status="401",
        )
        == 1
    )


def test_an_unknown_status_changes_nothing() -> None:
    """An event of a status this version does not know is ignored (logged), not an error."""
    metrics = Metrics()
    before = metrics.render()
    metrics.observe_event({"status": "teleported", "mode": "phoenix_rest"})
    assert metrics.render() == before
