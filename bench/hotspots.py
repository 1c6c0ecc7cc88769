"""Profile one consuming process (worker or baseline) through a burst of phoenix_rest starts with
py-spy, and print where its time goes (inclusive share per function, top frames by own time).

    .venv/bin/pip install py-spy   # into the venv only; not a project dependency
    .venv/bin/python bench/hotspots.py [--n 300] [--history 0] [--baseline] [--out /tmp/x.txt]

py-spy samples the process from outside (--idle off: CPU time, not waiting), so the figures are
shares of the process's CPU. Collapsed stacks are written to --out for a flame graph.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import statistics
import sys
import uuid
from pathlib import Path

from benchlib import (
    PIPECAT_SETTINGS,
    REPO,
    Producer,
    SimProcess,
    WorkerProcess,
    children_of,
    connect,
    cpu_s,
    delete_topology,
    new_topology,
    session_ids,
    sweep_leftovers,
    worker_env,
)
from phases import wait_warm

# Where a sample's time goes, by the package of its frames: (label, frame path prefixes).
BUCKETS = (
    (
        "logging (structlog, stdlib logging, redaction)",
        ("(structlog/", "(logging/", "(worker/logs"),
    ),
    ("pydantic", ("(pydantic",)),
    ("httpx / httpcore", ("(httpx/", "(httpcore/")),
    ("aio-pika / aiormq / pamqp", ("(aio_pika/", "(aiormq/", "(pamqp/")),
    ("prometheus_client", ("(prometheus_client/",)),
    ("json", ("(json/",)),
)
OURS = ("(worker/", "(tavus/", "(pipelines/", "(bench/")


async def profile(args: argparse.Namespace) -> Path:
    sim = SimProcess()
    await sim.start()
    connection = await connect()
    topo = new_topology(uuid.uuid4().hex[:6], "profile")
    if args.history:
        await sim.seed_ended(args.history)
    producer = Producer(connection, topo)
    await producer.start()
    env = worker_env(topo, sim, "profile-w", worker_max_sessions=args.n)
    argv = [sys.executable, str(REPO / "bench" / "baseline.py")] if args.baseline else None
    proc = WorkerProcess(argv, env) if argv else WorkerProcess.worker(env)
    sids = session_ids("x", args.n)
    out = Path(args.out)
    try:
        await proc.start()
        await asyncio.sleep(0.5)
        recorder = await spy(proc.pid, out)
        cpu0 = cpu_s(proc.pid)
        await producer.publish_burst(sids)
        await producer.wait_all(sids, "ready", 600)
        print(f"{args.n} starts, {(cpu_s(proc.pid) - cpu0) * 1000 / args.n:.1f} CPU ms each")
        recorder.send_signal(2)
        await recorder.wait()
    finally:
        await proc.stop()
        await producer.aclose()
        await delete_topology(connection, topo, sids)
        await sweep_leftovers(connection, topo.jobs_exchange.rsplit(".", 1)[0] + ".")
        await connection.close()
        await sim.aclose()
    return out


async def profile_child(args: argparse.Namespace) -> Path:
    """py-spy on each pipecat_daily session process from its start command to `ready`."""
    sim = SimProcess()
    await sim.start()
    connection = await connect()
    topo = new_topology(uuid.uuid4().hex[:6], "profile")
    producer = Producer(connection, topo)
    await producer.start()
    settings = {**PIPECAT_SETTINGS, "worker_warm_processes": 1}
    worker = WorkerProcess.worker(worker_env(topo, sim, "profile-w", **settings))
    sids = session_ids("y", args.n)
    out = Path(args.out)
    parts: list[Path] = []
    child_cpu_ms, ready_ms = [], []
    try:
        await worker.start()
        for sid in sids:
            await wait_warm(worker, 1)
            [child] = [p for p in children_of(worker.pid) if p not in used]
            used.add(child)
            part = out.with_suffix(f".{sid}")
            recorder = await spy(child, part)
            cpu0 = cpu_s(child)
            await producer.publish(sid)
            await producer.wait_all([sid], "ready", 60)
            child_cpu_ms.append((cpu_s(child) - cpu0) * 1000)
            timing = producer.timings[sid]
            ready_ms.append((timing.seen["ready"] - timing.published_at) * 1000)
            recorder.send_signal(2)
            await recorder.wait()
            parts.append(part)
            await producer.stop_session(sid)
            await producer.wait_all([sid], "ended", 60)
        print(
            f"{args.n} sessions: published → ready p50 {statistics.median(ready_ms):.0f} ms; "
            f"session process CPU in that time p50 {statistics.median(child_cpu_ms):.0f} ms"
        )
    finally:
        await worker.stop(graceful_s=10)
        await producer.aclose()
        await delete_topology(connection, topo, sids)
        await sweep_leftovers(connection, topo.jobs_exchange.rsplit(".", 1)[0] + ".")
        await connection.close()
        await sim.aclose()
    merge(parts, out)
    return out


def merge(parts: list[Path], out: Path) -> None:
    out.write_text("".join(p.read_text() for p in parts if p.exists()))


used: set[int] = set()


async def spy(pid: int, out: Path) -> asyncio.subprocess.Process:
    binary = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    recorder = await asyncio.create_subprocess_exec(
        binary, "record", "-p", str(pid), "-r", "250", "-f", "raw", "-o", str(out),
        "--nonblocking", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches
    return recorder


def summarise(path: Path, top: int) -> None:
    """Shares of samples: by package bucket, by our innermost function, and by own frame."""
    buckets: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for label, prefixes in BUCKETS:
            if any(p in f for f in frames for p in prefixes):
                buckets[label] += count
        mine = [f for f in frames if any(p in f for p in OURS)]
        ours[mine[-1] if mine else "(no frame of ours: event loop, library callbacks)"] += count
    if not total:
        print("no samples (is py-spy installed in the venv?)")
        return
    print(f"\n{total} samples; share whose stack contains:")
    for label, _ in BUCKETS:
        print(f"  {buckets[label] / total:6.1%}  {label}")
    print("\nby our innermost function on the stack:")
    for name, count in ours.most_common(top):
        print(f"  {count / total:6.1%}  {name}")
    print("\ntop frames by own time:")
    for name, count in own.most_common(top):
        print(f"  {count / total:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--history", type=int, default=0, help="ended conversations to seed")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--pipecat", action="store_true", help="the session processes instead")
    parser.add_argument("--out", default="/tmp/bench-profile.txt")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    summarise(asyncio.run(profile_child(args) if args.pipecat else profile(args)), args.top)


if __name__ == "__main__":
    main()
