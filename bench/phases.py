"""The benchmark phases of bench/run.py. Each takes the shared `Bench` and appends `Row`s; figures
that compare two things are measured in the same phase, interleaved where it matters.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from benchlib import (
    PIPECAT_SETTINGS,
    REPO,
    Producer,
    SimProcess,
    WorkerProcess,
    children_of,
    delete_topology,
    ms,
    new_topology,
    pct,
    rss_mb,
    session_ids,
    worker_env,
)


@dataclass
class Config:
    overhead_n: int
    overhead_rate_per_s: float
    history_n: int
    pipecat_n: int
    rtt_n: int
    throughput_n: int
    throughput_rounds: int
    parallel_n: int
    pool_runs: int
    cold_n: int
    follow_n: int
    follow_window_s: float
    scale_n: int
    is_quick: bool = False  # skips bench/pool_start.py; starts sessions on any warm process


QUICK = Config(40, 20, 20, 2, 50, 60, 1, 2, 1, 1, 100, 6, 40, is_quick=True)
FULL = Config(200, 20, 60, 12, 300, 300, 2, 8, 5, 3, 1000, 30, 300)


@dataclass
class Row:
    section: str
    measure: str
    value: str
    note: str = ""


@dataclass
class Bench:
    cfg: Config
    sim: SimProcess
    connection: aio_pika.abc.AbstractRobustConnection
    run_id: str
    rows: list[Row] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)  # spawn → consuming, phoenix workers
    idle_rss_mb: list[float] = field(default_factory=list)
    pipecat_warm_ready_s: list[float] = field(default_factory=list)
    _phase_seq: int = 0

    def add(self, section: str, measure: str, value: str, note: str = "") -> None:
        self.rows.append(Row(section, measure, value, note))
        print(f"  {measure:<58} {value:>24}  {note}", flush=True)

    def topology(self, name: str) -> Any:
        self._phase_seq += 1
        return new_topology(self.run_id, f"{self._phase_seq}{name}")

    async def phase(self, name: str) -> tuple[Any, Producer]:
        """A phase's own broker names, a reset simulator and a started producer."""
        topo = self.topology(name)
        await self.sim.reset()
        producer = Producer(self.connection, topo)
        await producer.start()
        return topo, producer

    async def worker(self, topo: Any, wid: str, **settings: Any) -> WorkerProcess:
        proc = WorkerProcess.worker(worker_env(topo, self.sim, wid, **settings))
        await proc.start()
        if settings.get("tavus_avatar_mode", "phoenix_rest") == "phoenix_rest":
            self.startup_s.append(proc.consuming_at - proc.spawned_at)
        return proc


def pcts(values: list[float]) -> str:
    return f"{ms(pct(values, 50))} / {ms(pct(values, 95))} / {ms(pct(values, 99))}"


def latencies(producer: Producer, sids: list[str], status: str = "ready") -> list[float]:
    out = []
    for sid in sids:
        t = producer.timings[sid]
        if status in t.seen:
            out.append(t.seen[status] - t.published_at)
    return out


# --- 1. start overhead and the broker round trip --------------------------------------------
async def broker_round_trip(b: Bench) -> list[float]:
    channel = await b.connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    got: asyncio.Queue[float] = asyncio.Queue()
    await queue.consume(lambda m: got.put(time.perf_counter()), no_ack=True)  # type: ignore[arg-type,return-value]
    samples = []
    for _ in range(b.cfg.rtt_n):
        t0 = time.perf_counter()
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue.name,
        )
        samples.append(await asyncio.wait_for(got.get(), 10) - t0)
    await channel.close()
    return samples


async def _overhead_run(
    b: Bench, n: int, history: int, baseline: str | None
) -> tuple[list[float], list[float]]:
    """(published → ready, published → accepted) of n jobs at the steady rate, 50 ms injected
    on the create; consumed by the worker, or by bench/baseline.py in a BASELINES variant."""
    topo, producer = await b.phase("overhead" if baseline is None else f"overhead-{baseline}")
    if history:
        await b.sim.seed_ended(history)
    await b.sim.latency("POST /v2/conversations", INJECTED_S)
    if baseline is None:
        worker = await b.worker(topo, f"{topo.jobs_queue}-w", worker_max_sessions=n + 10)
        b.idle_rss_mb.append(rss_mb(worker.pid))
    else:
        env = worker_env(topo, b.sim, f"{topo.jobs_queue}-b", worker_max_sessions=n + 10)
        worker = WorkerProcess.baseline(env, baseline)
        await worker.start()
    sids = session_ids("o", n)
    try:
        await producer.publish_at_rate(sids, b.cfg.overhead_rate_per_s)
        await producer.wait_all(sids, "ready", 60 + n / 5)
    finally:
        await worker.stop()
        await producer.aclose()
        await delete_topology(b.connection, topo, sids)
    ready = [s - INJECTED_S for s in latencies(producer, sids)]
    return ready, latencies(producer, sids, "accepted")


INJECTED_S = 0.05


async def start_overhead_phoenix(b: Bench, *, history: int = 0) -> None:
    cfg = b.cfg
    n = cfg.history_n if history else cfg.overhead_n
    ready, accepted = await _overhead_run(b, n, history, None)
    label = f", account with {history:,} ended conversations" if history else ""
    b.add(
        "1. start overhead",
        f"phoenix_rest{label}: published → ready − 50 ms (p50/p95/p99)",
        f"{pcts(ready)} ms",
        f"{n} jobs at {cfg.overhead_rate_per_s:g}/s, {len(ready)} ready",
    )
    if history:
        return
    b.add(
        "1. start overhead",
        "phoenix_rest: published → accepted (p50/p95/p99)",
        f"{pcts(accepted)} ms",
    )
    for variant, label in (
        ("guarded", "baseline with the same guarantees"),
        ("bare", "bare consumer (no claim, no record)"),
    ):
        base_ready, _ = await _overhead_run(b, n, 0, variant)
        b.add(
            "1. start overhead",
            f"{label}: published → ready − 50 ms (p50/p95/p99)",
            f"{pcts(base_ready)} ms",
            f"bench/baseline.py, same jobs and rate; worker p50 − this p50 = "
            f"{(statistics.median(ready) - statistics.median(base_ready)) * 1000:.1f} ms",
        )


def warm_available(worker: WorkerProcess) -> int:
    return len(worker.find_logs("pool.child_warm")) - len(worker.find_logs("pool.acquired"))


async def wait_warm(worker: WorkerProcess, count: int, timeout_s: float = 120) -> None:
    deadline = time.perf_counter() + timeout_s
    while warm_available(worker) < count:
        if time.perf_counter() > deadline:
            raise SystemExit(f"the pool did not get {count} warm processes in {timeout_s} s")
        await asyncio.sleep(0.1)


async def one_pipecat_session(
    producer: Producer, worker: WorkerProcess, sid: str, child_rss: list[float] | None = None
) -> None:
    await producer.publish(sid)
    await producer.wait_all([sid], "ready", 60)
    if child_rss is not None:
        for line in worker.find_logs("session.pipeline_ready"):
            if line.get("session_id") == sid:
                child_rss.append(rss_mb(int(line["pid"])))
    await producer.stop_session(sid)
    await producer.wait_all([sid], "ended", 60)


async def pipecat_phases(b: Bench) -> None:
    """Items 1 (pipecat_daily), 3 (parallel provisioning), 4 (warm end to end), 6 (child RSS)."""
    cfg = b.cfg
    topo, producer = await b.phase("pipecat")
    warm = 2
    worker = await b.worker(
        topo, f"{topo.jobs_queue}-w", worker_warm_processes=warm, **PIPECAT_SETTINGS
    )
    all_sids: list[str] = []
    try:
        await wait_warm(worker, warm)
        idle_children = [rss_mb(p) for p in children_of(worker.pid)]
        # 1: start overhead, 50 ms on the conversation create (made by the session process).
        await b.sim.latency("POST /v2/conversations", 0.05)
        sids = session_ids("p", cfg.pipecat_n)
        all_sids += sids
        child_rss: list[float] = []
        settled = 1 if cfg.is_quick else warm  # full: no refill spawning during a measurement
        for sid in sids:
            await wait_warm(worker, settled)
            await one_pipecat_session(producer, worker, sid, child_rss)
        ready = [s - 0.05 for s in latencies(producer, sids)]
        b.add(
            "1. start overhead",
            "pipecat_daily (warm): published → ready − 50 ms (p50/p95/p99)",
            f"{pcts(ready)} ms",
            f"{len(ready)} sessions one at a time, pool kept warm",
        )
        # 3: parallel provisioning with room/token/conversation latencies.
        room_s, token_s, conv_s = 0.2, 0.1, 0.3
        await b.sim.latency("POST /v1/rooms", room_s)
        await b.sim.latency("POST /v1/meeting-tokens", token_s)
        await b.sim.latency("POST /v2/conversations", conv_s)
        sids = session_ids("q", cfg.parallel_n)
        all_sids += sids
        for sid in sids:
            await wait_warm(worker, settled)
            await one_pipecat_session(producer, worker, sid)
        ready_s = latencies(producer, sids)
        serial = room_s + 2 * token_s + conv_s
        floor = max(room_s, token_s) + conv_s  # the conversation needs the room first
        p50 = statistics.median(ready_s)
        b.add(
            "3. parallel provisioning",
            "pipecat_daily published → ready, p50 (p95)",
            f"{ms(p50)} ({ms(pct(ready_s, 95))}) ms",
            f"room {room_s * 1000:.0f}, 2 tokens {token_s * 1000:.0f}, conversation "
            f"{conv_s * 1000:.0f} ms injected; {len(ready_s)} sessions",
        )
        b.add(
            "3. parallel provisioning",
            "  sum of injected (all serial) / max / dependency floor",
            f"{serial * 1000:.0f} / {conv_s * 1000:.0f} / {floor * 1000:.0f} ms",
            "floor = max(room, token) + conversation (the bot joins the room first)",
        )
        b.add(
            "3. parallel provisioning",
            "  p50 − dependency floor",
            f"{ms(p50 - floor)} ms",
            "the work that is not provider latency",
        )
        for endpoint in ("POST /v1/rooms", "POST /v1/meeting-tokens", "POST /v2/conversations"):
            await b.sim.latency(endpoint, 0)
        b.add(
            "6. footprint",
            "pipecat_daily: session process RSS (warm idle / in session)",
            f"{_mean(idle_children):.0f} / {_mean(child_rss):.0f} MB",
            f"{len(idle_children)} idle, {len(child_rss)} in session (own RSS, not shared-aware)",
        )
        b.add(
            "6. footprint",
            "pipecat-capable worker RSS (parent only)",
            f"{rss_mb(worker.pid):.0f} MB",
        )
    finally:
        await worker.stop(graceful_s=10)
        await producer.aclose()
        await delete_topology(b.connection, topo, all_sids)
    b.pipecat_warm_ready_s = latencies(producer, all_sids[: cfg.pipecat_n])


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


# --- 4. warm vs cold --------------------------------------------------------------------------
async def warm_vs_cold(b: Bench) -> None:
    cfg = b.cfg
    topo, producer = await b.phase("cold")
    worker = await b.worker(
        topo, f"{topo.jobs_queue}-w", worker_warm_processes=0, **PIPECAT_SETTINGS
    )
    sids = session_ids("c", cfg.cold_n)
    try:
        for sid in sids:
            await one_pipecat_session(producer, worker, sid)
    finally:
        await worker.stop(graceful_s=10)
        await producer.aclose()
        await delete_topology(b.connection, topo, sids)
    cold = latencies(producer, sids)
    warm = b.pipecat_warm_ready_s
    b.add(
        "4. warm vs cold",
        "pipecat_daily published → ready, p50: warm pool / cold spawn",
        f"{ms(pct(warm, 50))} / {ms(pct(cold, 50))} ms",
        f"worker end to end, {len(warm)} warm / {len(cold)} cold, 50 ms on the create",
    )
    if cfg.is_quick:
        return
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "bench" / "pool_start.py"),
        "--runs",
        str(cfg.pool_runs),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = (out.decode() for out in await asyncio.wait_for(proc.communicate(), 600))
    match = re.search(r"acquire → ready\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", stdout)
    if match:
        w50, w95, c50, c95 = (float(x) for x in match.groups())
        b.add(
            "4. warm vs cold",
            "pool acquire → child ready, median (p95): warm / cold",
            f"{w50:.0f} ({w95:.0f}) / {c50:.0f} ({c95:.0f}) ms",
            f"bench/pool_start.py --runs {cfg.pool_runs}; cold/warm = {c50 / w50:.1f}×",
        )
    else:
        b.add("4. warm vs cold", "bench/pool_start.py", "failed", stderr.strip()[-200:])
