"""Capacity per mode: how many pipecat_daily sessions a host takes, where each kind of job goes
when pipecat_daily is full or load-gated, and what /status and /metrics say about it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.ops.fake_worker import FakeWorkerView
from tests.ops.promtext import value
from worker.ops.capacity import Capacity, CapacityPlan, Host, default_pipecat_sessions
from worker.ops.metrics import Metrics
from worker.ops.status import StatusServer
from worker.settings import Settings

BIG_HOST = Host(cpus=16, memory_mb=65536)


def capacity(
    max_sessions: int = 10,
    max_pipecat_sessions: int | None = 2,
    *,
    overloaded: list[bool] | None = None,
    changes: list[int] | None = None,
) -> Capacity:
    gate = overloaded if overloaded is not None else [False]
    plan = CapacityPlan.build(
        max_sessions=max_sessions,
        pipecat_daily_available=True,
        max_pipecat_sessions=max_pipecat_sessions,
        host=BIG_HOST,
    )
    seen = changes if changes is not None else []
    return Capacity(
        plan,
        is_overloaded=lambda: gate[0],
        why_overloaded=lambda: "CPU load 0.83 (threshold 0.70)",
        on_change=lambda: seen.append(1),
    )


@pytest.mark.parametrize(
    ("cpus", "memory_mb", "expected"),
    [
        (2, 24_000, 1),  # the bench box: (2 − 0.5) ÷ 0.8
        (4, 8_192, 4),  # (4 − 0.5) ÷ 0.8
        (16, 8_192, 18),  # memory binds: 8 GB × 2/3 ÷ 300 MB
        (1, 4_096, 1),  # never 0 where pipecat_daily runs: the load gate protects the one
    ],
)
def test_pipecat_sessions_follow_cpus_and_memory(
    cpus: float, memory_mb: float, expected: int
) -> None:
    """Without WORKER_MAX_PIPECAT_SESSIONS, a host takes (CPUs − 0.5) ÷ 0.8 pipecat_daily sessions,
    no more than two thirds of its memory holds at 300 MB each, and at least one."""
    assert default_pipecat_sessions(Host(cpus=cpus, memory_mb=memory_mb)) == expected


def test_a_containers_quota_is_the_host(tmp_path: Path) -> None:
    """In a container with a CPU quota and a memory limit, the defaults use those, not the
    machine's CPUs and memory."""
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1\n")
    (tmp_path / "memory.max").write_text(f"{2 * 2**30}\n")
    (tmp_path / "memory.current").write_text("1\n")
    host = Host.detect(tmp_path)
    assert (host.cpus, host.memory_mb) == (1.5, 2048)
    assert default_pipecat_sessions(host) == 1


def test_settings_build_the_plan_and_the_gate_is_on_where_pipecat_daily_runs() -> None:
    """By default the load gate is on (0.7) where pipecat_daily can run and off where it cannot;
    WORKER_MAX_PIPECAT_SESSIONS and WORKER_LOAD_GATE override the derived values."""
    on = CapacityPlan.from_settings(Settings(), pipecat_daily_available=True, host=BIG_HOST)
    assert on.cpu_threshold == 0.7 and on.max_pipecat_sessions == 10  # capped by max_sessions
    off = CapacityPlan.from_settings(Settings(), pipecat_daily_available=False, host=BIG_HOST)
    assert off.cpu_threshold is None and off.max_pipecat_sessions == 0
    chosen = Settings(worker_max_pipecat_sessions=3, worker_load_gate="off", worker_max_sessions=50)
    plan = CapacityPlan.from_settings(chosen, pipecat_daily_available=True, host=BIG_HOST)
    assert (plan.max_pipecat_sessions, plan.cpu_threshold) == (3, None)
    assert plan.pipecat_basis == "WORKER_MAX_PIPECAT_SESSIONS"


def test_explicit_pipecat_job_finds_no_room_when_its_slots_are_full() -> None:
    """With both pipecat_daily slots taken, an explicit pipecat_daily job gets no slot and the
    reason names the count, while phoenix_rest still has room (leave the job for another worker)."""
    cap = capacity()
    assert cap.place("pipecat_daily").mode == "pipecat_daily"
    assert cap.place("pipecat_daily").mode == "pipecat_daily"
    placement = cap.place("pipecat_daily")
    assert placement.slot is None
    assert placement.reason == "pipecat_daily is at capacity on this worker (2 of 2 sessions)"
    assert cap.has_room("phoenix_rest") and cap.free == 8


def test_auto_job_falls_back_to_phoenix_rest_with_the_reason() -> None:
    """An auto job on a worker whose pipecat_daily slots are full runs as phoenix_rest, with a
    fallback_reason saying pipecat_daily is at capacity here."""
    cap = capacity(max_pipecat_sessions=1)
    assert cap.place("auto").mode == "pipecat_daily"
    placement = cap.place("auto")
    assert placement.mode == "phoenix_rest"
    assert placement.fallback_reason == (
        "pipecat_daily is at capacity on this worker (1 of 1 sessions)"
    )


def test_a_full_worker_has_room_for_nothing() -> None:
    """Once every WORKER_MAX_SESSIONS slot is taken, no job of any mode is placed."""
    cap = capacity(max_sessions=2)
    cap.place("phoenix_rest")
    cap.place("auto")
    for requested in ("auto", "phoenix_rest", "pipecat_daily"):
        placement = cap.place(requested)  # type: ignore[arg-type]
        assert placement.slot is None
        assert placement.reason == "worker full (2 of 2 sessions)"
    assert cap.free == 0


def test_the_load_gate_closes_pipecat_daily_only() -> None:
    """While the host is overloaded, pipecat_daily has no room (auto jobs run as phoenix_rest and
    say why); phoenix_rest jobs are still taken; the gate opening lets pipecat_daily in again."""
    gate = [True]
    cap = capacity(overloaded=gate)
    assert cap.free_for("pipecat_daily") == 0
    auto = cap.place("auto")
    assert auto.mode == "phoenix_rest"
    assert auto.fallback_reason == (
        "pipecat_daily paused on this worker: overloaded (CPU load 0.83 (threshold 0.70))"
    )
    assert cap.place("phoenix_rest").mode == "phoenix_rest"
    gate[0] = False
    assert cap.place("pipecat_daily").mode == "pipecat_daily"


def test_released_and_moved_slots_free_their_mode() -> None:
    """A released slot frees its mode once (a second release changes nothing); an auto session
    that fell back to phoenix_rest gives its pipecat_daily slot to the next job."""
    changes: list[int] = []
    cap = capacity(max_pipecat_sessions=1, changes=changes)
    slot = cap.place("auto").slot
    assert slot is not None and slot.mode == "pipecat_daily"
    assert slot.move_to("phoenix_rest")
    assert cap.taken_by("pipecat_daily") == 0 and cap.place("pipecat_daily").slot is not None
    assert not slot.move_to("pipecat_daily")  # no room left there
    slot.release()
    slot.release()
    assert cap.taken == 1 and cap.taken_by("phoenix_rest") == 0
    assert len(changes) == 4  # take, move, take, release


async def test_status_and_metrics_show_capacity_per_mode() -> None:
    """/status has each mode's max, sessions, free slots and why there is no room, with the
    figures the plan came from; /metrics has the same per mode and the load gate's threshold."""
    cap = capacity(max_pipecat_sessions=1)
    cap.place("pipecat_daily")
    metrics = Metrics()
    server = StatusServer(FakeWorkerView(), metrics, "127.0.0.1", 0, capacity=cap)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            status = (await http.get("/status")).json()
            page = (await http.get("/metrics")).content
    finally:
        await server.aclose()
    document = status["capacity"]
    assert document["max_pipecat_sessions"] == 1 and document["load_gate"] == 0.7
    assert document["pipecat_basis"] == "WORKER_MAX_PIPECAT_SESSIONS"
    assert document["modes"]["pipecat_daily"] == {
        "max_sessions": 1,
        "sessions": 1,
        "free_slots": 0,
        "no_room": "pipecat_daily is at capacity on this worker (1 of 1 sessions)",
    }
    assert document["modes"]["phoenix_rest"]["free_slots"] == 9
    assert value(page, "avatar_worker_mode_max_sessions", mode="pipecat_daily") == 1
    assert value(page, "avatar_worker_mode_free_slots", mode="pipecat_daily") == 0
    assert value(page, "avatar_worker_mode_free_slots", mode="phoenix_rest") == 9
    assert value(page, "avatar_worker_load_gate") == 0.7
