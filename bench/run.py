"""One command for the worker's performance figures: start overhead, intake throughput against a
bare baseline, parallel provisioning, warm vs cold session processes, following many live
sessions, footprint and scale-out. Prints a table and writes docs/benchmarks.md.

    .venv/bin/python bench/run.py [--quick] [--only SECTION ...] [--no-write]

Needs a RabbitMQ at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/; a cluster's nodes may be
listed, comma-separated); the simulator, the workers and the baseline run as separate processes on
this machine. Broker names are unique per run (`bench<id>.*`) and deleted afterwards.

    .venv/bin/python bench/run.py --cluster

runs the start overhead and intake throughput phases on the local 3-node cluster
(`scripts/cluster.sh urls`: the worker, the baselines and the producer get the node list, node 1
first; the broker CPU is every node's) and prints the table, leaving docs/benchmarks.md alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.metadata
import platform
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import benchlib
from benchlib import REPO, SimProcess, machine, ms, pct, sweep_leftovers
from load import burst_of_many, follow_many, footprint, intake_throughput, scale_out
from phases import (
    FULL,
    QUICK,
    Bench,
    broker_round_trip,
    pipecat_phases,
    start_overhead_phoenix,
    warm_vs_cold,
)

T = TypeVar("T")
SECTIONS = ("overhead", "throughput", "pipecat", "cold", "follow", "burst", "scale")
DOC = REPO / "docs" / "benchmarks.md"
ANALYSIS_MARK = "<!-- analysis: kept by bench/run.py -->"


def versions(server_version: str) -> str:
    found = [f"Python {platform.python_version()}"]
    for name in ("pipecat-ai", "aio-pika", "aiormq", "httpx"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    found.append(f"RabbitMQ {server_version}")
    return ", ".join(found)


async def run(args: argparse.Namespace) -> tuple[Bench, str, float]:
    sim = SimProcess()
    await sim.start()
    if args.cluster:
        print(f"on the cluster: {benchlib.use_cluster()}", flush=True)
    connection = await benchlib.connect()
    server = str(connection.transport.connection.server_properties.get("version", "?"))  # type: ignore[union-attr]
    cfg = QUICK if args.quick else FULL
    if args.overhead_n:
        cfg = dataclasses.replace(cfg, overhead_n=args.overhead_n)
    b = Bench(cfg, sim, connection, uuid.uuid4().hex[:6])
    only = set(args.only or SECTIONS)
    started = time.perf_counter()
    try:
        for section, title, phase in CLUSTER_PLAN if args.cluster else PLAN:
            if section in only:
                print(title, flush=True)
                phase_started = time.perf_counter()
                try:
                    await phase(b)
                except SystemExit as exc:  # one broken phase must not lose the others' figures
                    b.add(title, "FAILED", "-", str(exc)[:300])
                print(f"  ({time.perf_counter() - phase_started:.0f} s)", flush=True)
        if b.startup_s and b.idle_rss_mb:
            footprint(b)
    finally:
        swept = await sweep_leftovers(connection, f"bench{b.run_id}.")
        if swept:
            print(f"swept {swept} leftover queues", flush=True)
        await connection.close()
        await sim.aclose()
    return b, server, time.perf_counter() - started


async def cancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; SIGTERM cancels it, so every phase's clean-up (processes, queues) still runs."""
    task = asyncio.ensure_future(coro)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


async def round_trip(b: Bench, measure: str, where: str = "") -> None:
    rtt = await broker_round_trip(b)
    b.add(
        "1. start overhead",
        f"{measure} (p50/p95/p99)",
        f"{ms(pct(rtt, 50))} / {ms(pct(rtt, 95))} / {ms(pct(rtt, 99))} ms",
        f"persistent publish + confirm + consumer receipt, {len(rtt)} sequential{where}",
    )


async def overhead(b: Bench) -> None:
    await round_trip(b, "physical limit: one broker round trip")
    await start_overhead_phoenix(b)
    await start_overhead_phoenix(b, history=1000)


# A third of the cluster's burst rate here: at 20 jobs/s some sessions were not ready in 100 s.
CLUSTER_OVERHEAD_RATE_PER_S = 10.0


async def cluster_overhead(b: Bench) -> None:
    await round_trip(b, "one broker round trip on the cluster", ", classic queue on node 1")
    b.cfg = dataclasses.replace(b.cfg, overhead_rate_per_s=CLUSTER_OVERHEAD_RATE_PER_S)
    await start_overhead_phoenix(b)


PLAN: tuple[tuple[str, str, Callable[[Bench], Awaitable[None]]], ...] = (
    ("overhead", "1. start overhead", overhead),
    ("pipecat", "1/3/4/6. pipecat_daily", pipecat_phases),
    ("cold", "4. warm vs cold", warm_vs_cold),
    ("throughput", "2. intake throughput", intake_throughput),
    ("follow", "5. following live sessions", follow_many),
    ("burst", "5. a burst of as many jobs", burst_of_many),
    ("scale", "7. scale-out", scale_out),
)


CLUSTER_PLAN: tuple[tuple[str, str, Callable[[Bench], Awaitable[None]]], ...] = (
    ("overhead", "1. start overhead, on the cluster", cluster_overhead),
    ("throughput", "2. intake throughput, on the cluster", intake_throughput),
)


def table(b: Bench) -> str:
    lines = ["| # | measure | value | notes |", "|---|---|---|---|"]
    order = sorted(b.rows, key=lambda r: r.section[:1])
    for row in order:
        lines.append(f"| {row.section} | {row.measure.strip()} | {row.value} | {row.note} |")
    return "\n".join(lines)


def code_version() -> str:
    """The commit measured, and whether the worker's code had uncommitted changes."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "worker", "tavus", "pipelines"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"commit {head or '?'}" + (
        " + uncommitted changes in worker/tavus/pipelines" if dirty else ""
    )


def write_doc(b: Bench, server: str, elapsed_s: float, quick: bool) -> None:
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kind = "`--quick` (small N, a smoke check)" if quick else "full"
    head = f"""# Benchmarks

Produced by `.venv/bin/python bench/run.py` ({kind} run, {elapsed_s:.0f} s) on {now},
{code_version()}.

- Machine: {info["nproc"]} CPUs, {info["cpu"]}, load average {info["load"]} at the end (shared,
  noisy: read ratios and differences measured in the same run, not absolute single numbers).
- {versions(server)}.
- Everything on one machine: RabbitMQ, the provider simulator (`bench/simproc.py`, its own
  process), each worker as `python -m worker.cli run` (JSON logs at INFO, as in production), the
  baseline (`bench/baseline.py`) and the producer (`bench/run.py`). Latencies are measured by the
  producer: job published (before the publish call) → the event received on its `reply_to` queue.
- pipecat_daily uses fake speech services and a Daily-like transport
  (`WORKER_PIPELINE_HOOK=tests.worker.session_hooks:sim_avatar`); the session process creates the
  Tavus conversation at the simulator as Pipecat's `TavusVideoService` does.

"""
    analysis = ""
    if DOC.exists() and ANALYSIS_MARK in DOC.read_text():
        analysis = DOC.read_text().split(ANALYSIS_MARK, 1)[1]
    DOC.write_text(head + table(b) + "\n\n" + ANALYSIS_MARK + analysis.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, about a minute")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run these sections only")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="start overhead and throughput on the local 3-node cluster; prints, never writes",
    )
    parser.add_argument("--overhead-n", type=int, default=0, help="jobs per start overhead run")
    args = parser.parse_args()
    b, server, elapsed_s = asyncio.run(cancellable(run(args)))
    print()
    print(table(b))
    print(f"\n{versions(server)}; {machine()['nproc']} CPUs; {elapsed_s:.0f} s")
    if not args.no_write and not args.only and not args.cluster:
        write_doc(b, server, elapsed_s, args.quick)
        print(f"wrote {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
