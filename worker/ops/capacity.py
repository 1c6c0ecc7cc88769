"""How many sessions of each mode this worker takes: slots per mode, the load gate, and the defaults
derived from the host's CPUs and memory and the measured cost of a session.

A phoenix_rest session costs the worker about 14 KB and 25 µs of CPU per second (it only follows a
Tavus-hosted conversation); a pipecat_daily session runs a whole bot in its own process. So every
session takes one of `max_sessions` slots, and a pipecat_daily session must also find one of
`max_pipecat_sessions` and pass the load gate (CPU load under its threshold). The intake asks:

    placement = capacity.place(job.mode or default_mode)  # an explicit mode the resolver accepted
    if placement.slot is not None:     # start in placement.mode (an auto job's ready event carries
        ...                            # placement.fallback_reason); the session owns the slot
    elif capacity.free > 0:            # only this job's mode is full here (explicit pipecat_daily):
        ...                            # leave it for another worker via a delay queue, no hot loop
    else:                              # the worker is full: requeue and stop consuming
        ...

with ``capacity.free`` as the prefetch. A session gives its slot back with `Slot.release()` on
every exit path; an auto session that falls back to phoenix_rest calls `Slot.move_to`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import psutil  # type: ignore[import-untyped]  # no stubs in the lock (types-psutil)

from worker.contract import Mode, ResolvedMode
from worker.ops.load import (
    CGROUP_ROOT,
    DEFAULT_CPU_THRESHOLD,
    cgroup_cpu_limit,
    cgroup_memory_limit,
)

if TYPE_CHECKING:
    from worker.settings import Settings

PIPECAT: Final = "pipecat_daily"
PHOENIX: Final = "phoenix_rest"
MODES: tuple[ResolvedMode, ...] = (PIPECAT, PHOENIX)

# bench/pipecat_capacity.py (docs/benchmarks.md): one session's Python side, with VAD, smart-turn
# and the 1280×720 video relay, is 0.13-0.21 CPU-s/s and 209 MB RSS. daily-core's WebRTC work
# (VP8 decode of the replica, VP8 encode for the user, Opus, RGB↔I420) cannot be measured
# without a room; ffmpeg's libvpx doing the same on that box took 0.45-0.65 CPU-s/s. These
# planning figures add the upper end of that (see docs/operations.md).
PIPECAT_SESSION_CPU = 0.8
PIPECAT_SESSION_MEMORY_MB = 300
RESERVED_CPUS = 0.5  # the worker process, the broker client, warm processes starting
MEMORY_SHARE = 2 / 3  # leave a third of the memory free


@dataclass(frozen=True)
class Host:
    """What this worker may use: CPUs (the cgroup quota when there is one) and memory in MB."""

    cpus: float
    memory_mb: float | None

    @classmethod
    def detect(cls, cgroup_root: Path = CGROUP_ROOT) -> Host:
        cpus = cgroup_cpu_limit(cgroup_root)
        if cpus is None:
            cpus = float(
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1
            )
        limit = cgroup_memory_limit(cgroup_root)
        memory = limit if limit is not None else int(psutil.virtual_memory().total)
        return cls(cpus=cpus, memory_mb=memory / 2**20)


def default_pipecat_sessions(
    host: Host,
    *,
    cpu_per_session: float = PIPECAT_SESSION_CPU,
    memory_per_session_mb: float = PIPECAT_SESSION_MEMORY_MB,
) -> int:
    """pipecat_daily sessions this host holds: (CPUs − 0.5) ÷ CPU per session, and no more than
    two thirds of the memory ÷ memory per session; at least 1 (the load gate still protects)."""
    by_cpu = math.floor((host.cpus - RESERVED_CPUS) / cpu_per_session + 1e-9)
    by_memory = (
        math.floor(host.memory_mb * MEMORY_SHARE / memory_per_session_mb)
        if host.memory_mb is not None
        else by_cpu
    )
    return max(1, min(by_cpu, by_memory))


@dataclass(frozen=True)
class CapacityPlan:
    """The limits a worker runs with, and where each came from (for logs and /status)."""

    max_sessions: int
    max_pipecat_sessions: int  # 0 when pipecat_daily cannot run here
    cpu_threshold: float | None  # the load gate; None: off
    host: Host
    pipecat_basis: str

    @classmethod
    def build(
        cls,
        *,
        max_sessions: int,
        pipecat_daily_available: bool,
        max_pipecat_sessions: int | None = None,
        cpu_per_session: float = PIPECAT_SESSION_CPU,
        memory_per_session_mb: float = PIPECAT_SESSION_MEMORY_MB,
        load_gate: Literal["auto", "on", "off"] = "auto",
        cpu_threshold: float | None = None,
        host: Host | None = None,
    ) -> CapacityPlan:
        """The plan from settings: an explicit value wins; otherwise derived from the host.

        The load gate is on by default wherever pipecat_daily can run (``auto``), at
        ``cpu_threshold`` or 0.7.
        """
        host = host or Host.detect()
        if not pipecat_daily_available:
            pipecat, basis = 0, "pipecat_daily cannot run here"
        elif max_pipecat_sessions is not None:
            pipecat, basis = max_pipecat_sessions, "WORKER_MAX_PIPECAT_SESSIONS"
        else:
            pipecat = default_pipecat_sessions(
                host, cpu_per_session=cpu_per_session, memory_per_session_mb=memory_per_session_mb
            )
            basis = (
                f"{host.cpus:g} CPUs and {host.memory_mb or 0:.0f} MB at {cpu_per_session:g} CPU "
                f"and {memory_per_session_mb:g} MB per session"
            )
        gate_on = load_gate == "on" or (load_gate == "auto" and pipecat_daily_available)
        threshold = (cpu_threshold or DEFAULT_CPU_THRESHOLD) if gate_on else None
        return cls(
            max_sessions=max_sessions,
            max_pipecat_sessions=min(pipecat, max_sessions),
            cpu_threshold=threshold,
            host=host,
            pipecat_basis=basis,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, pipecat_daily_available: bool, host: Host | None = None
    ) -> CapacityPlan:
        """The plan from the worker's settings (WORKER_MAX_SESSIONS, WORKER_LOAD_GATE, …)."""
        return cls.build(
            max_sessions=settings.worker_max_sessions,
            pipecat_daily_available=pipecat_daily_available,
            max_pipecat_sessions=settings.worker_max_pipecat_sessions,
            load_gate=settings.worker_load_gate,
            cpu_threshold=settings.worker_load_cpu_threshold,
            host=host,
        )

    def describe(self) -> dict[str, object]:
        """For the worker.started log line and /status."""
        return {
            "max_sessions": self.max_sessions,
            "max_pipecat_sessions": self.max_pipecat_sessions,
            "pipecat_basis": self.pipecat_basis,
            "load_gate": self.cpu_threshold,
            "cpus": round(self.host.cpus, 2),
            "memory_mb": None if self.host.memory_mb is None else round(self.host.memory_mb),
        }


class Slot:
    """One session's place on this worker; `release()` gives it back (idempotent)."""

    def __init__(self, capacity: Capacity, mode: ResolvedMode) -> None:
        self._capacity = capacity
        self.mode: ResolvedMode = mode
        self.is_released = False

    def move_to(self, mode: ResolvedMode) -> bool:
        """Count the session under another mode (an ``auto`` job that fell back to phoenix_rest
        when Daily failed); False, and no change, when that mode has no room."""
        if self.is_released or mode == self.mode:
            return not self.is_released
        if mode == PIPECAT and self._capacity.why_no_room(PIPECAT, moving=True) is not None:
            return False
        self._capacity._count({self.mode: -1, mode: +1})
        self.mode = mode
        return True

    def release(self) -> None:
        if self.is_released:
            return
        self.is_released = True
        self._capacity._count({self.mode: -1})


@dataclass(frozen=True)
class Placement:
    """Where a job goes on this worker: a `slot` in `slot.mode`, or nowhere (`slot` is None,
    `reason` says why). `fallback_reason` is set when an ``auto`` job goes to phoenix_rest
    because pipecat_daily has no room here."""

    slot: Slot | None
    reason: str | None = None
    fallback_reason: str | None = None

    @property
    def mode(self) -> ResolvedMode | None:
        return self.slot.mode if self.slot is not None else None


class Capacity:
    """Sessions per mode on this worker, and whether a job of a given mode has room.

    ``is_overloaded`` is the load gate (e.g. `LoadMonitor.is_overloaded`): it closes
    pipecat_daily only, since a phoenix_rest session costs the host next to nothing.
    ``on_change`` is called whenever a slot is taken, moved or released.
    """

    def __init__(
        self,
        plan: CapacityPlan,
        *,
        is_overloaded: Callable[[], bool] = lambda: False,
        why_overloaded: Callable[[], str | None] = lambda: None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.plan = plan
        self._is_overloaded = is_overloaded
        self._why_overloaded = why_overloaded
        self.on_change = on_change
        self._taken: dict[ResolvedMode, int] = {PIPECAT: 0, PHOENIX: 0}

    # --- reading ------------------------------------------------------------------------------
    @property
    def taken(self) -> int:
        return sum(self._taken.values())

    def taken_by(self, mode: ResolvedMode) -> int:
        return self._taken[mode]

    def max_for(self, mode: ResolvedMode) -> int:
        return self.plan.max_pipecat_sessions if mode == PIPECAT else self.plan.max_sessions

    def free_for(self, mode: ResolvedMode) -> int:
        """Sessions of ``mode`` this worker could still take now (0 while the gate is closed)."""
        free_total = max(self.plan.max_sessions - self.taken, 0)
        if mode == PHOENIX:
            return free_total
        if self._is_overloaded():
            return 0
        return min(free_total, max(self.plan.max_pipecat_sessions - self._taken[PIPECAT], 0))

    @property
    def free(self) -> int:
        """Slots free for any job (the intake's prefetch; 0: stop consuming)."""
        return self.free_for(PHOENIX)

    def has_room(self, mode: ResolvedMode) -> bool:
        return self.why_no_room(mode) is None

    def why_no_room(self, mode: ResolvedMode, *, moving: bool = False) -> str | None:
        """None when a ``mode`` session fits now, else one line saying why not."""
        if not moving and self.taken >= self.plan.max_sessions:
            return f"worker full ({self.taken} of {self.plan.max_sessions} sessions)"
        if mode == PHOENIX:
            return None
        if self.plan.max_pipecat_sessions == 0:
            return "pipecat_daily cannot run on this worker"
        if self._taken[PIPECAT] >= self.plan.max_pipecat_sessions:
            return (
                f"pipecat_daily is at capacity on this worker "
                f"({self._taken[PIPECAT]} of {self.plan.max_pipecat_sessions} sessions)"
            )
        if self._is_overloaded():
            why = self._why_overloaded() or "CPU load over the gate"
            return f"pipecat_daily paused on this worker: overloaded ({why})"
        return None

    # --- taking -------------------------------------------------------------------------------
    def try_take(self, mode: ResolvedMode) -> Slot | None:
        """A slot for a ``mode`` session, or None when it does not fit now."""
        if self.why_no_room(mode) is not None:
            return None
        self._count({mode: +1})
        return Slot(self, mode)

    def place(self, requested: Mode) -> Placement:
        """Where a job asking for ``requested`` goes (after the mode resolver has said an
        explicit mode can run here at all):

        * ``pipecat_daily``/``phoenix_rest``: a slot of that mode, or none with the reason;
        * ``auto``: pipecat_daily when it runs here and has room; otherwise phoenix_rest, with
          `fallback_reason` saying why when pipecat_daily runs here but is full or gated.
        """
        if requested != "auto":
            slot = self.try_take(requested)
            return Placement(slot, None if slot is not None else self.why_no_room(requested))
        if self.plan.max_pipecat_sessions > 0:
            slot = self.try_take(PIPECAT)
            if slot is not None:
                return Placement(slot)
        why_not_pipecat = self.why_no_room(PIPECAT)
        slot = self.try_take(PHOENIX)
        if slot is None:
            return Placement(None, self.why_no_room(PHOENIX))
        fallback = why_not_pipecat if self.plan.max_pipecat_sessions > 0 else None
        return Placement(slot, fallback_reason=fallback)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per mode: max, taken, free and why there is no room (for /status)."""
        return {
            mode: {
                "max_sessions": self.max_for(mode),
                "sessions": self._taken[mode],
                "free_slots": self.free_for(mode),
                "no_room": self.why_no_room(mode),
            }
            for mode in MODES
        }

    def _count(self, deltas: dict[ResolvedMode, int]) -> None:
        """Slots taken (+1) or given back (−1) per mode; tells `on_change`."""
        for mode, delta in deltas.items():
            self._taken[mode] += delta
        self.on_change()
