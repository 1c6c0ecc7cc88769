"""How loaded this host (or container) is, and whether the worker should stop taking jobs.

Like LiveKit Agents: CPU utilisation averaged over a window of samples (5 × 0.5 s), compared with
a threshold (0.7 in production; None turns a check off). Memory is the used fraction now. Once
overloaded, the worker resumes only below threshold − `hysteresis`, so it does not flap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the lock (types-psutil)
import structlog

log = structlog.get_logger("worker.ops.load")

DEFAULT_CPU_THRESHOLD = 0.7
CGROUP_ROOT = Path("/sys/fs/cgroup")
_EPSILON = 1e-9


@dataclass(frozen=True)
class LoadSample:
    """One reading: CPU used since the previous reading and memory used now, both 0..1."""

    cpu: float
    memory: float


Sampler = Callable[[], LoadSample]


class SystemSampler:
    """Reads the container's cgroup v2 limits when it has them (a CPU quota, a memory limit), so
    a worker in a 2-CPU container on a 64-CPU host sees its own load; otherwise psutil's
    host-wide figures."""

    def __init__(
        self, cgroup_root: Path = CGROUP_ROOT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._root = cgroup_root
        self._clock = clock
        self._cpus = cgroup_cpu_limit(cgroup_root)
        self._memory_limit = cgroup_memory_limit(cgroup_root)
        self._last: tuple[float, float] | None = None  # (clock, cpu usage µs)
        if self._cpus is None:
            psutil.cpu_percent(interval=None)  # the first call only sets psutil's baseline

    def __call__(self) -> LoadSample:
        return LoadSample(cpu=self._cpu(), memory=self._memory())

    def _cpu(self) -> float:
        if self._cpus is None:
            return float(psutil.cpu_percent(interval=None)) / 100.0
        now, usage_us = self._clock(), _cgroup_cpu_usage_us(self._root)
        last, self._last = self._last, (now, usage_us)
        if last is None or now <= last[0]:
            return 0.0
        used = (usage_us - last[1]) / 1e6 / ((now - last[0]) * self._cpus)
        return min(max(used, 0.0), 1.0)

    def _memory(self) -> float:
        if self._memory_limit is None:
            return float(psutil.virtual_memory().percent) / 100.0
        current = int((self._root / "memory.current").read_text().strip())
        return min(current / self._memory_limit, 1.0)


def cgroup_cpu_limit(root: Path) -> float | None:
    """CPUs allowed by cpu.max ("200000 100000" → 2.0); None without a quota or cgroup v2."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not (root / "cpu.stat").exists():
        return None
    return int(quota) / int(period)


def _cgroup_cpu_usage_us(root: Path) -> float:
    for line in (root / "cpu.stat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec":
            return float(value)
    raise OSError(f"no usage_usec in {root / 'cpu.stat'}")


def cgroup_memory_limit(root: Path) -> int | None:
    try:
        value = (root / "memory.max").read_text().strip()
    except OSError:
        return None
    if value == "max" or not (root / "memory.current").exists():
        return None
    return int(value)


class LoadMonitor:
    """Samples load every `sample_interval_s` and says when the worker is overloaded.

    `on_change(is_overloaded)` is called on each transition (the intake pauses or resumes).
    Run it with `run()` in the app's task group; `aclose()` stops it. Tests call `sample()`.
    """

    def __init__(
        self,
        cpu_threshold: float | None = DEFAULT_CPU_THRESHOLD,
        memory_threshold: float | None = None,
        *,
        sample_interval_s: float = 0.5,
        window: int = 5,
        hysteresis: float = 0.05,
        sampler: Sampler | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        for name, value in (
            ("cpu_threshold", cpu_threshold),
            ("memory_threshold", memory_threshold),
        ):
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1] or None (off), got {value}")
        if window < 1 or sample_interval_s <= 0 or hysteresis < 0:
            raise ValueError("window >= 1, sample_interval_s > 0 and hysteresis >= 0 are required")
        self.cpu_threshold = cpu_threshold
        self.memory_threshold = memory_threshold
        self.sample_interval_s = sample_interval_s
        self.hysteresis = hysteresis
        self._sampler = sampler or SystemSampler()
        self._on_change = on_change
        self._cpu: deque[float] = deque(maxlen=window)
        self._memory = 0.0
        self._is_overloaded = False
        self._closed = asyncio.Event()

    @property
    def load(self) -> float:
        """CPU utilisation averaged over the window, 0..1 (0 before the first sample)."""
        return sum(self._cpu) / len(self._cpu) if self._cpu else 0.0

    @property
    def memory(self) -> float:
        """Memory used, 0..1, at the last sample."""
        return self._memory

    @property
    def is_overloaded(self) -> bool:
        return self._is_overloaded

    def why_overloaded(self) -> str | None:
        """One line for /readyz and logs, e.g. "CPU load 0.82 ≥ 0.70"; None when not overloaded."""
        if not self._is_overloaded:
            return None
        parts = []
        if self.cpu_threshold is not None and self.load >= self.cpu_threshold - self.hysteresis:
            parts.append(f"CPU load {self.load:.2f} (threshold {self.cpu_threshold:.2f})")
        if (
            self.memory_threshold is not None
            and self._memory >= self.memory_threshold - self.hysteresis
        ):
            parts.append(f"memory {self._memory:.2f} (threshold {self.memory_threshold:.2f})")
        return ", ".join(parts) or "overloaded"

    def sample(self) -> None:
        """Take one reading and update `is_overloaded` (calling `on_change` on a transition)."""
        reading = self._sampler()
        self._cpu.append(reading.cpu)
        self._memory = reading.memory
        was = self._is_overloaded
        self._is_overloaded = self._over(0.0) if not was else self._over(self.hysteresis)
        if self._is_overloaded != was:
            log.warning(
                "worker.overloaded" if self._is_overloaded else "worker.load_recovered",
                load=round(self.load, 3),
                memory=round(self._memory, 3),
            )
            if self._on_change is not None:
                self._on_change(self._is_overloaded)

    def _over(self, margin: float) -> bool:
        """At or above a threshold lowered by `margin` (0 to enter, hysteresis to stay)."""
        margin += _EPSILON  # an average of 0.6, 0.7 and 0.8 is 0.7, whatever floats say
        cpu = self.cpu_threshold is not None and self.load >= self.cpu_threshold - margin
        memory = (
            self.memory_threshold is not None and self._memory >= self.memory_threshold - margin
        )
        return cpu or memory

    async def run(self) -> None:
        """Sample until `aclose()`. A failed reading is logged and skipped."""
        while not self._closed.is_set():
            try:
                self.sample()
            except (OSError, ValueError, psutil.Error) as exc:
                log.error("load.sample_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.sample_interval_s)

    async def aclose(self) -> None:
        """Stop `run()`; calling it again does nothing."""
        self._closed.set()
