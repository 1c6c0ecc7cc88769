"""Session start latency: a warm pool child against a cold spawn, with fake services (offline).

Measures acquire → start_session → the child's ``ready`` (bot in the room, pipeline running,
conversation created) over N runs each, and prints median / p95 side by side.

    .venv/bin/python bench/pool_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import logging
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.worker.fake_child import make_spec  # noqa: E402
from worker.logs import configure_logging  # noqa: E402
from worker.pool import ProcessPool  # noqa: E402

LIMITS = {
    "max_duration_s": 60.0,
    "setup_timeout_s": 10.0,
    "avatar_timeout_s": 10.0,
    "participant_left_timeout_s": 0.0,
}


@dataclass
class Series:
    """Seconds per run: acquire alone, and acquire → ready."""

    acquire_s: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)


async def one_session(pool: ProcessPool, series: Series, run: int) -> None:
    started = time.perf_counter()
    child = await pool.acquire(timeout_s=60.0)
    acquired = time.perf_counter()
    await child.start_session(make_spec(session_id=f"bench-{run}"), **LIMITS)
    await child.wait_ready()
    ready = time.perf_counter()
    series.acquire_s.append(acquired - started)
    series.ready_s.append(ready - started)
    child.stop("bench")
    await child.wait_outcome()
    await child.wait_exited(10.0)


async def measure(runs: int, *, warm: bool) -> Series:
    pool = ProcessPool(
        size=1 if warm else 0,
        child_args=["--factories", "tests.worker.fake_child:factories"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    series = Series()
    try:
        await pool.start()
        for run in range(runs):
            if warm and not await pool.wait_warm(timeout_s=60.0):
                raise SystemExit("the pool did not get warm within 60s")
            await one_session(pool, series, run)
    finally:
        await pool.aclose()
    return series


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def row(label: str, warm: list[float], cold: list[float]) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:8.1f} {p95(values) * 1000:8.1f}"

    return f"{label:<22} {cell(warm)}   {cell(cold)}"


def versions() -> str:
    names = ("pipecat-ai", "daily-python", "onnxruntime")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    configure_logging(level="ERROR", fmt="console")
    logging.getLogger("worker.child").setLevel(logging.CRITICAL)
    warm = await measure(args.runs, warm=True)
    cold = await measure(args.runs, warm=False)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"pool start benchmark, {now}, {args.runs} runs each, fake services (no network)")
    print(f"Python {platform.python_version()}, {versions()}")
    load = f", load {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"{platform.platform()}, {os.cpu_count()} CPUs{load}")
    print()
    print(f"{'ms':<22} {'warm pool':>17}   {'cold spawn':>17}")
    print(f"{'':<22} {'median':>8} {'p95':>8}   {'median':>8} {'p95':>8}")
    print(row("acquire", warm.acquire_s, cold.acquire_s))
    print(row("acquire → ready", warm.ready_s, cold.ready_s))


if __name__ == "__main__":
    asyncio.run(main())
