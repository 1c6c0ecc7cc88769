"""The load phases of bench/run.py: intake throughput against the baseline (interleaved rounds),
following many live sessions, scale-out over 1–3 worker processes, and start-up figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass

from benchlib import (
    Producer,
    WorkerProcess,
    broker_cpu_s,
    cpu_s,
    delete_topology,
    rss_mb,
    session_ids,
    worker_env,
)
from phases import Bench


@dataclass
class Burst:
    """One burst: starts/s, and CPU ms per start of the consumers, the simulator and the broker."""

    rate: float
    cpu_ms: float
    sim_cpu_ms: float
    broker_cpu_ms: float


async def burst(
    b: Bench, name: str, n: int, workers: int = 1, *, baseline: str | None = None
) -> Burst:
    """n jobs published at once to `workers` consuming processes (the worker, or bench/baseline.py
    in one of its BASELINES variants).

    starts/s = n / (last ready − first publish): every start, pipeline fill included. The broker's
    CPU includes whatever else uses it at the time (other tests on a shared machine).
    """
    topo, producer = await b.phase(name)
    procs: list[WorkerProcess] = []
    sids = session_ids(name[:1], n)
    try:
        for i in range(workers):
            env = worker_env(topo, b.sim, f"{topo.jobs_queue}-w{i}", worker_max_sessions=n)
            if baseline is not None:
                procs.append(WorkerProcess.baseline(env, baseline))
            else:
                procs.append(WorkerProcess.worker(env))
        await asyncio.gather(*(p.start() for p in procs))
        if baseline is None:
            b.startup_s += [p.consuming_at - p.spawned_at for p in procs]
        await asyncio.sleep(0.5)
        pids = [p.pid for p in procs]
        before = [sum(cpu_s(p) for p in pids), cpu_s(b.sim.pid), _broker_cpu_s()]
        await producer.publish_burst(sids)
        await producer.wait_all(sids, "ready", 120 + n / 5)
        after = [sum(cpu_s(p) for p in pids), cpu_s(b.sim.pid), _broker_cpu_s()]
    finally:
        for p in procs:
            await p.stop()
        await producer.aclose()
        await delete_topology(b.connection, topo, sids)
    timings = [producer.timings[s] for s in sids]
    first = min(t.published_at for t in timings)
    last = max(t.seen["ready"] for t in timings if "ready" in t.seen)
    done = sum(1 for t in timings if "ready" in t.seen)
    per_start = [(a - z) / done * 1000 for a, z in zip(after, before, strict=True)]
    return Burst(done / (last - first), *per_start)


def _broker_cpu_s() -> float:
    """Every node's CPU: on a cluster, each start costs the replicas too."""
    return broker_cpu_s()


async def intake_throughput(b: Bench) -> None:
    """The worker against two baselines, in interleaved rounds: one with the same broker
    bookkeeping for the contract's guarantees (the issue's baseline: the gap is the worker's own
    overhead) and a bare consumer without it (the gap also prices the guarantees)."""
    n = b.cfg.throughput_n
    runs: dict[str, list[Burst]] = {"worker": [], "guarded": [], "bare": []}
    for _ in range(b.cfg.throughput_rounds):
        runs["worker"].append(await burst(b, "tput", n))
        runs["guarded"].append(await burst(b, "gbase", n, baseline="guarded"))
        runs["bare"].append(await burst(b, "base", n, baseline="bare"))
    rate = {k: statistics.median(x.rate for x in v) for k, v in runs.items()}
    rounds = ", ".join(
        "/".join(f"{runs[k][i].rate:.0f}" for k in runs) for i in range(len(runs["worker"]))
    )
    section = "2. intake throughput"
    b.add(
        section,
        "phoenix_rest starts/s: worker / baseline with the same guarantees / bare consumer",
        " / ".join(f"{rate[k]:.0f}" for k in runs),
        f"{n} jobs at once, zero latency, 1 process; rounds {rounds}",
    )
    b.add(
        section,
        "ratio worker ÷ baseline with the same guarantees (goal ≥ 0.80)",
        f"{rate['worker'] / rate['guarded']:.2f}",
        "median of interleaved rounds; the baseline takes the same claim and writes the same "
        "leased record, bare",
    )
    b.add(
        section,
        "ratio worker ÷ bare consumer (no claim, no record)",
        f"{rate['worker'] / rate['bare']:.2f}",
        "the guarantees' price: per-session queues cost RabbitMQ ~2 ms CPU each (bench/broker_ops.py)",
    )
    for label, attr in (
        ("consumer process", "cpu_ms"),
        ("simulator", "sim_cpu_ms"),
        ("RabbitMQ", "broker_cpu_ms"),
    ):
        figures = " / ".join(
            f"{statistics.median(getattr(x, attr) for x in v):.1f}" for v in runs.values()
        )
        b.add(
            section,
            f"CPU ms per start, {label}: worker / same guarantees / bare",
            figures,
            "same bursts; RabbitMQ's figure includes other users",
        )


FOLLOW_RATE_PER_S = 25


@dataclass
class Chunk:
    """Per start, while one fifth of the sessions was being started."""

    cpu_ms: float
    sim_cpu_ms: float
    list_calls: float


async def fill_in_fifths(b: Bench, producer: Producer, pid: int, sids: list[str]) -> list[Chunk]:
    """Start `sids` at FOLLOW_RATE_PER_S, one fifth at a time, measuring each fifth's cost."""
    step = max(1, len(sids) // 5)
    chunks = []
    for k in range(0, len(sids), step):
        chunk = sids[k : k + step]
        await b.sim.calls()  # clears the record
        cpu0, sim0 = cpu_s(pid), cpu_s(b.sim.pid)
        await producer.publish_at_rate(chunk, FOLLOW_RATE_PER_S)
        await producer.wait_all(chunk, "ready", 120 + len(chunk) / 5)
        calls = await b.sim.calls()
        lists = calls["by_endpoint"].get("GET /v2/conversations", 0)
        chunks.append(
            Chunk(
                (cpu_s(pid) - cpu0) / len(chunk) * 1000,
                (cpu_s(b.sim.pid) - sim0) / len(chunk) * 1000,
                lists / len(chunk),
            )
        )
    return chunks


async def follow_many(b: Bench) -> None:
    n, window_s = b.cfg.follow_n, b.cfg.follow_window_s
    topo, producer = await b.phase("follow")
    worker = await b.worker(topo, f"{topo.jobs_queue}-w", worker_max_sessions=n)
    sids = session_ids("f", n)
    try:
        pause_s = 1 if b.cfg.is_quick else 3
        await asyncio.sleep(pause_s)
        idle_rss = rss_mb(worker.pid)
        b.idle_rss_mb.append(idle_rss)
        # At a steady rate: a burst of 1,000 measures the start-up cliff (see the analysis), not
        # the cost of following.
        t0 = time.perf_counter()
        chunks = await fill_in_fifths(b, producer, worker.pid, sids)
        fill_s = time.perf_counter() - t0
        await asyncio.sleep(pause_s)
        await b.sim.calls()  # clears the record
        cpu0, w0 = cpu_s(worker.pid), time.perf_counter()
        samples = []
        while time.perf_counter() - w0 < window_s:
            await asyncio.sleep(1)
            samples.append(rss_mb(worker.pid))
        cpu1, w1 = cpu_s(worker.pid), time.perf_counter()
        calls = await b.sim.calls()
        ended = sum(1 for s in sids if "ended" in producer.timings[s].seen)
    finally:
        await worker.stop()
        await producer.aclose()
        await delete_topology(b.connection, topo, sids)
    wall = w1 - w0
    tavus = calls["by_provider"].get("tavus", 0) / wall
    top = sorted(calls["by_endpoint"].items(), key=lambda kv: -kv[1])[:3]
    rss = statistics.median(samples)
    b.add(
        "5. following live sessions",
        f"{n:,} live phoenix_rest: worker CPU s per wall s",
        f"{(cpu1 - cpu0) / wall:.3f}",
        f"{wall:.0f} s window, poll every 3 s; {ended} ended early",
    )
    b.add(
        "5. following live sessions",
        f"{n:,} live phoenix_rest: worker RSS",
        f"{rss:.0f} MB",
        f"idle before: {idle_rss:.0f} MB",
    )
    b.add(
        "5. following live sessions",
        "Tavus calls per second",
        f"{tavus:.1f}",
        "; ".join(f"{k} {v / wall:.1f}/s" for k, v in top),
    )
    b.add(
        "5. following live sessions",
        f"time to start all {n:,} at {FOLLOW_RATE_PER_S} jobs/s",
        f"{fill_s:.1f} s",
        f"the live set grows to {n:,}; ideal {n / FOLLOW_RATE_PER_S:.0f} s",
    )
    first, last = chunks[0], chunks[-1]
    b.add(
        "5. following live sessions",
        "cost per start with the first / last fifth of them live",
        f"{first.cpu_ms:.0f} / {last.cpu_ms:.0f} ms worker CPU",
        f"simulator {first.sim_cpu_ms:.0f} / {last.sim_cpu_ms:.0f} ms; "
        f"{first.list_calls:.1f} / {last.list_calls:.1f} GET /v2/conversations per start",
    )
    b.add(
        "6. footprint",
        "phoenix_rest: RSS per live session",
        f"{(rss - idle_rss) / n * 1024:.0f} KB",
        f"(RSS with {n:,} − idle) / {n:,}",
    )


BURST_TIMEOUT_S = 90.0


async def burst_of_many(b: Bench) -> None:
    """All of item 5's sessions published at once: how long until every one is ready."""
    n = b.cfg.follow_n
    topo, producer = await b.phase("burstmany")
    worker = await b.worker(topo, f"{topo.jobs_queue}-w", worker_max_sessions=n)
    sids = session_ids("m", n)
    try:
        t0 = time.perf_counter()
        await producer.publish_burst(sids)
        with contextlib.suppress(SystemExit):
            await producer.wait_all(sids, "ready", BURST_TIMEOUT_S)
        elapsed_s = time.perf_counter() - t0
        ready = sum(1 for s in sids if "ready" in producer.timings[s].seen)
        retries = len(worker.find_logs("events.publish_retry"))
    finally:
        await worker.stop()
        await producer.aclose()
        await delete_topology(b.connection, topo, sids)
    value = f"{elapsed_s:.1f} s" if ready == n else f"{ready} of {n} ready"
    b.add(
        "5. following live sessions",
        f"{n:,} jobs published at once: all ready after",
        value,
        f"{n / elapsed_s:.0f} starts/s; {retries} event publish retries (timeouts) logged"
        + ("" if ready == n else f"; gave up after {BURST_TIMEOUT_S:.0f} s"),
    )


async def scale_out(b: Bench) -> None:
    n = b.cfg.scale_n
    rates = {}
    for k in (1, 2, 3):
        rates[k] = (await burst(b, f"scale{k}", n, workers=k)).rate
    b.add(
        "7. scale-out",
        "starts/s with 1 / 2 / 3 worker processes",
        " / ".join(f"{rates[k]:.0f}" for k in (1, 2, 3)),
        f"{n} jobs at once; ×{rates[2] / rates[1]:.2f}, ×{rates[3] / rates[1]:.2f} "
        "(2 cores shared with the broker, simulator and producer)",
    )


def footprint(b: Bench) -> None:
    s = b.startup_s
    b.add(
        "6. footprint",
        "worker start-up: spawn → consuming, p50 (max)",
        f"{statistics.median(s) * 1000:.0f} ({max(s) * 1000:.0f}) ms",
        f"{len(s)} phoenix_rest starts",
    )
    b.add(
        "6. footprint",
        "idle worker RSS (phoenix_rest)",
        f"{statistics.median(b.idle_rss_mb):.0f} MB",
        f"{len(b.idle_rss_mb)} workers",
    )
