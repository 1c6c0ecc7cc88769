"""The load monitor: when the worker stops taking jobs because of load, and when it resumes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker.ops.load import LoadMonitor, LoadSample, SystemSampler


class ScriptedSampler:
    """Returns the given readings in order (CPU, memory), then repeats the last one."""

    def __init__(self, readings: Iterable[tuple[float, float]]) -> None:
        self.readings = [LoadSample(cpu, memory) for cpu, memory in readings]
        self.taken = 0
        self.three_taken = asyncio.Event()

    def __call__(self) -> LoadSample:
        reading = self.readings[min(self.taken, len(self.readings) - 1)]
        self.taken += 1
        if self.taken >= 3:
            self.three_taken.set()
        return reading


def monitor_over(
    cpu: Iterable[float], memory: float = 0.3, **options: float | None
) -> tuple[LoadMonitor, list[bool]]:
    changes: list[bool] = []
    monitor = LoadMonitor(
        sampler=ScriptedSampler((c, memory) for c in cpu),
        on_change=changes.append,
        window=3,
        **options,  # type: ignore[arg-type]
    )
    return monitor, changes


def test_pauses_at_threshold_and_resumes_below_it_minus_hysteresis() -> None:
    """CPU averaged over the window reaching 0.7 pauses intake; it resumes only under 0.65."""
    cpu = [0.6, 0.7, 0.8, 0.7, 0.65, 0.6, 0.65, 0.6, 0.6]
    monitor, changes = monitor_over(cpu, cpu_threshold=0.7, hysteresis=0.05)
    seen = []
    for _ in cpu:
        monitor.sample()
        seen.append((round(monitor.load, 3), monitor.is_overloaded))
    assert seen == [
        (0.6, False),
        (0.65, False),
        (0.7, True),  # average of 0.6, 0.7, 0.8 reaches the threshold
        (0.733, True),
        (0.717, True),
        (0.65, True),  # at threshold − hysteresis: still paused
        (0.633, False),  # below it: resumes
        (0.617, False),
        (0.617, False),
    ]
    assert changes == [True, False]


def test_a_single_spike_does_not_pause() -> None:
    """One busy sample in a quiet window stays under the threshold (the window smooths it)."""
    monitor, changes = monitor_over([0.2, 0.2, 1.0, 0.2, 0.2], cpu_threshold=0.7)
    for _ in range(5):
        monitor.sample()
    assert changes == []
    assert not monitor.is_overloaded


def test_memory_pressure_pauses_on_its_own() -> None:
    """Memory used at or above its threshold pauses even with idle CPUs, and says why."""
    monitor, changes = monitor_over([0.1], memory=0.92, cpu_threshold=0.7, memory_threshold=0.9)
    monitor.sample()
    assert monitor.is_overloaded and changes == [True]
    assert monitor.why_overloaded() == "memory 0.92 (threshold 0.90)"


def test_thresholds_off_never_pause() -> None:
    """With both thresholds None (dev mode) even a saturated host is never overloaded."""
    monitor, changes = monitor_over([1.0], memory=1.0, cpu_threshold=None, memory_threshold=None)
    for _ in range(5):
        monitor.sample()
    assert monitor.load == 1.0
    assert not monitor.is_overloaded and changes == []
    assert monitor.why_overloaded() is None


@pytest.mark.parametrize("threshold", [0.0, 1.5, -0.1])
def test_a_threshold_outside_0_1_is_refused(threshold: float) -> None:
    """A threshold must be a fraction in (0, 1]; the error names the setting."""
    with pytest.raises(ValueError, match="cpu_threshold"):
        LoadMonitor(threshold, sampler=ScriptedSampler([(0.0, 0.0)]))


async def test_run_samples_until_aclose() -> None:
    """run() samples every interval and returns promptly after aclose()."""
    sampler = ScriptedSampler([(0.9, 0.1)])
    changes: list[bool] = []
    monitor = LoadMonitor(0.7, sample_interval_s=0.01, sampler=sampler, on_change=changes.append)
    task = asyncio.create_task(monitor.run())
    await asyncio.wait_for(sampler.three_taken.wait(), 5)
    await monitor.aclose()
    await asyncio.wait_for(task, 1)
    await monitor.aclose()
    assert changes == [True]


async def test_a_failing_sampler_is_logged_and_sampling_goes_on() -> None:
    """A reading that raises OSError is logged as load.sample_failed; the next one still counts."""
    calls = 0
    three_calls = asyncio.Event()

    def flaky() -> LoadSample:
        nonlocal calls
        calls += 1
        if calls >= 3:
            three_calls.set()
        if calls == 1:
            raise OSError("cpu.stat vanished")
        return LoadSample(0.95, 0.1)

    monitor = LoadMonitor(0.7, sample_interval_s=0.01, sampler=flaky)
    with capture_logs() as logs:
        task = asyncio.create_task(monitor.run())
        await asyncio.wait_for(three_calls.wait(), 5)
        await monitor.aclose()
        await asyncio.wait_for(task, 1)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["load.sample_failed"]
    assert monitor.is_overloaded


def test_cgroup_limits_are_the_containers_own(tmp_path: Path) -> None:
    """In a container with a 2-CPU quota and a memory limit, load is measured against those."""
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1000000\nuser_usec 1\n")
    (tmp_path / "memory.max").write_text("1000000000\n")
    (tmp_path / "memory.current").write_text("250000000\n")
    now = [100.0]
    sampler = SystemSampler(tmp_path, clock=lambda: now[0])
    first = sampler()
    assert first == LoadSample(cpu=0.0, memory=0.25)
    now[0] += 0.5  # 0.5 s later the cgroup used 0.5 CPU-seconds of its 2 CPUs: 50 %
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1\n")
    assert sampler().cpu == pytest.approx(0.5)


def test_without_a_cgroup_quota_the_host_figures_are_used(tmp_path: Path) -> None:
    """cpu.max "max" (no quota) falls back to psutil's host-wide readings, both within 0..1."""
    (tmp_path / "cpu.max").write_text("max 100000\n")
    reading = SystemSampler(tmp_path)()
    assert 0.0 <= reading.cpu <= 1.0 and 0.0 < reading.memory <= 1.0
