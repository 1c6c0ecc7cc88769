"""Soak: N jobs across K real worker processes against the in-process simulator and RabbitMQ (one
node, or the local 3-node cluster), with chaos — random SIGKILLs of workers (each restarted), one
outage of every worker's broker connection, provider faults (5xx bursts, latency) and, on the
cluster, one node killed for good — then the figures of the promise: one terminal outcome per job,
no session with two live conversations, nothing left active, no call cut short.

    .venv/bin/python bench/soak.py --jobs 500 --workers 3
    .venv/bin/python bench/soak.py --cluster --kill-node 2 --jobs 300 --workers 3 --kills 3

Workers reach RabbitMQ through local TCP proxies (one per node), so the "broker outage" is seen by
the workers only (other users of the broker are not disturbed). On the cluster (`--cluster`, the
nodes of `scripts/cluster.sh urls`), worker i lists node i first; `--kill-node N` SIGKILLs node N
(`scripts/cluster.sh kill N`) once a share of the jobs has an outcome and restarts it at the end
(`scripts/cluster.sh restart N`), whatever happens. Each session is stopped after a random short
hold. Everything is bounded: the run ends by itself within --timeout-s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aio_pika  # noqa: E402
import benchlib  # noqa: E402

from tavus.sim import Simulator  # noqa: E402
from tests.reliability.env import BrokerProxy, peak_overlap  # noqa: E402
from worker.amqp_connection import connect_any  # noqa: E402
from worker.amqp_nodes import AmqpNodes  # noqa: E402
from worker.broker import QUORUM, Topology, declare_job_topology, json_message  # noqa: E402
from worker.client_tools import send_stop  # noqa: E402

TAVUS_KEY = "soak-tavus-key-0123456789"
TERMINAL = ("ended", "failed", "expired")
RETRY_DELAYS_S = (0.5, 1.0)
CLUSTER_SCRIPT = REPO / "scripts" / "cluster.sh"
# How a phoenix_rest call may end without anything of ours having cut it: any other end of a
# session that was `ready` (worker_lost, worker_shutdown, idle, a failure) is a call cut short.
CALL_ENDS_OK = ("stopped", "max_duration", "participant_left", "provider_ended")
CUT_SHORT = "calls cut short (ready, then ended other than by stop/max duration/user/provider)"


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process
    worker_id: str
    log_path: Path


@dataclass
class Run:
    args: argparse.Namespace
    sim: Simulator
    topo: Topology
    nodes: AmqpNodes
    proxies: list[BrokerProxy]
    log_dir: Path
    started_s: float = field(default_factory=time.monotonic)
    events: dict[str, list[tuple[float, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    workers: list[Worker] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)
    cut_at_s: float | None = None
    node_killed_at_s: float | None = None
    stop_after_s: dict[str, float] = field(default_factory=dict)
    stops_sent: Counter[str] = field(default_factory=Counter)
    spawned: int = 0

    def now(self) -> float:
        return time.monotonic() - self.started_s

    def statuses(self, sid: str) -> list[str]:
        return [e["status"] for _, e in self.events[sid]]

    def terminal(self, sid: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events[sid] if e["status"] in TERMINAL]


def topology(prefix: str) -> Topology:
    return Topology(
        jobs_exchange=f"{prefix}.jobs",
        jobs_queue=f"{prefix}.sessions",
        events_exchange=f"{prefix}.events",
        control_exchange=f"{prefix}.control",
        dead_letter_queue=f"{prefix}.sessions.dead",
    )


def worker_nodes(run: Run, index: int, worker_id: str) -> str:
    """Worker `index`'s AMQP_URL: every node through its proxy, node `index` first."""
    proxied = [
        AmqpNodes.parse(proxy.url_for(node.url.split("?", 1)[0]))[0]
        for node, proxy in zip(run.nodes, run.proxies, strict=True)
    ]
    first = index % len(proxied)
    rotated = AmqpNodes(tuple(proxied[first:] + proxied[:first]))
    return rotated.with_query(name=worker_id, reconnect_interval=1).url


def worker_env(run: Run, worker_id: str, index: int) -> dict[str, str]:
    args = run.args
    return benchlib.worker_env(
        run.topo,
        run.sim,
        worker_id,
        tavus_api_key=TAVUS_KEY,
        amqp_url=worker_nodes(run, index, worker_id),
        worker_max_sessions=args.max_sessions,
        worker_max_attempts=5,
        worker_retry_delays_s=",".join(str(d) for d in RETRY_DELAYS_S),
        worker_drain_timeout_s=5,
        worker_poll_interval_s=0.5,
        worker_reaper_interval_s=args.reaper_interval_s,
        worker_reaper_grace_s=args.reaper_grace_s,
        worker_session_lease_s=args.reaper_grace_s,
        provider_timeout_s=2,
        provider_retry_attempts=2,
        log_level="INFO",
    )


async def spawn(run: Run, index: int, *, attempts: int = 30) -> Worker:
    """Start worker process `index` (a fresh worker id) and wait until it consumes; a start that
    fails (the broker is away) is retried after a second, as an orchestrator would."""
    for _ in range(attempts):
        run.spawned += 1
        worker_id = f"soak-w{index}-{run.spawned}"
        log_path = run.log_dir / f"{worker_id}.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "worker.cli",
                "run",
                env=worker_env(run, worker_id, index),
                cwd=str(REPO),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and proc.returncode is None:
                if b"worker.started" in log_path.read_bytes():
                    return Worker(index, proc, worker_id, log_path)
                await asyncio.sleep(0.2)
        except asyncio.CancelledError:  # the run is over: leave no process behind
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        print(
            f"[{run.now():6.1f}s] {worker_id} did not start (see {log_path}); retrying", flush=True
        )
        await asyncio.sleep(1.0)
    raise RuntimeError(f"worker {index} did not start in {attempts} attempts")


async def collect_events(run: Run, channel: aio_pika.abc.AbstractChannel) -> None:
    exchange = await channel.declare_exchange(
        run.topo.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    # A quorum queue: no event is lost while the node it would live on is down.
    queue = await channel.declare_queue(events_queue(run), durable=True, arguments=QUORUM)
    await queue.bind(exchange, "#")

    async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        sid = event["session_id"]
        run.events[sid].append((run.now(), event))
        if event["status"] == "ready" and sid not in run.stop_after_s:
            run.stop_after_s[sid] = run.now() + random.uniform(
                run.args.hold_min_s, run.args.hold_max_s
            )

    await queue.consume(on_event, no_ack=True)


async def stopper(
    run: Run, connection: aio_pika.abc.AbstractConnection, done: asyncio.Event
) -> None:
    """Stop each session once its hold is over; re-send every 3 s while it is not over (a stop
    sent to a worker that died meanwhile is lost with it). Every send is bounded: a send that
    does not finish in 5 s is reported and the channel replaced."""
    channel = await connection.channel()
    while not done.is_set():
        now = run.now()
        for sid, due in list(run.stop_after_s.items()):
            if run.terminal(sid) or now < due:
                continue
            if run.stops_sent[sid] == 0 or now >= due + 3 * run.stops_sent[sid]:
                run.stops_sent[sid] += 1
                try:
                    await asyncio.wait_for(send_stop(channel, sid, "soak hold over", run.topo), 5)
                except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                    print(f"[{run.now():6.1f}s] stop for {sid} not sent: {exc!r}", flush=True)
                    await asyncio.sleep(0.5)
                    with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError):
                        channel = await asyncio.wait_for(connection.channel(), 5)
                except TimeoutError:
                    print(f"[{run.now():6.1f}s] stop for {sid}: no answer in 5 s", flush=True)
                    with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError):
                        channel = await asyncio.wait_for(connection.channel(), 5)
        await asyncio.sleep(0.1)


def events_queue(run: Run) -> str:
    return f"{run.topo.jobs_queue}.soak-events"


async def cluster_script(*args: str, timeout_s: float = 180.0) -> str:
    """`scripts/cluster.sh ARGS`; its output (SystemExit with what it said when it fails)."""
    proc = await asyncio.create_subprocess_exec(
        str(CLUSTER_SCRIPT),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SystemExit(f"scripts/cluster.sh {' '.join(args)} took over {timeout_s} s") from None
    said = out.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"scripts/cluster.sh {' '.join(args)} failed: {said[-800:]}")
    return said


async def kill_node(run: Run) -> None:
    node = run.args.kill_node
    run.node_killed_at_s = run.now()
    await cluster_script("kill", str(node))
    print(f"[{run.node_killed_at_s:6.1f}s] SIGKILL broker node {node}, for good", flush=True)


async def chaos(run: Run, expected: list[str], done: asyncio.Event) -> None:
    """Kill a random worker every so often (and restart it), cut the broker once, kill a node for
    good (on the cluster), inject faults."""
    args = run.args
    kills_left = args.kills
    next_kill = 4.0
    next_fault = 2.0
    cut_due = True
    node_kill_due = bool(args.kill_node)
    while not done.is_set():
        now = run.now()
        finished = sum(1 for sid in expected if run.terminal(sid))
        progress = finished / max(len(expected), 1)
        if node_kill_due and progress >= args.node_kill_at:
            node_kill_due = False
            await kill_node(run)
        if kills_left and now >= next_kill:
            kills_left -= 1
            next_kill = now + random.uniform(4.0, 8.0)
            victim = random.choice(run.workers)
            with contextlib.suppress(ProcessLookupError):  # it may have exited by itself
                victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
            run.kills.append((now, victim.worker_id))
            print(f"[{now:6.1f}s] SIGKILL {victim.worker_id}", flush=True)
            replacement = await spawn(run, victim.index)
            run.workers[run.workers.index(victim)] = replacement
            print(f"[{run.now():6.1f}s] restarted as {replacement.worker_id}", flush=True)
        if cut_due and progress >= 0.4:
            cut_due = False
            run.cut_at_s = now
            for proxy in run.proxies:
                proxy.cut(down_s=args.outage_s)
            print(f"[{now:6.1f}s] broker outage for every worker ({args.outage_s} s)", flush=True)
        if now >= next_fault:
            next_fault = now + random.uniform(3.0, 6.0)
            if random.random() < 0.5:
                run.sim.faults.fail_next(
                    "POST /v2/conversations", n=random.randint(2, 6), status=503
                )
                print(f"[{now:6.1f}s] 5xx burst on creates", flush=True)
            else:
                run.sim.faults.latency("* /v2/**", random.uniform(0.2, 1.0))
                await asyncio.sleep(random.uniform(1.0, 3.0))
                run.sim.faults.latency("* /v2/**", 0)
                print(f"[{now:6.1f}s] latency burst", flush=True)
        await asyncio.sleep(0.2)


async def publish_jobs(
    run: Run, connection: aio_pika.abc.AbstractConnection, ids: list[str]
) -> None:
    """Publish every job with a confirm, again until confirmed, as a producer that must not lose
    one would (a publish that is not confirmed, say while the job queue elects a new leader
    after a node loss, may be lost; a job published twice is one session)."""
    channel = await connection.channel(publisher_confirms=True)
    await declare_job_topology(channel, run.topo)
    exchange = await channel.get_exchange(run.topo.jobs_exchange)
    for sid in ids:
        body = {"session_id": sid, "max_duration_s": 600, "metadata": {"soak": True}}
        for attempt in range(60):
            try:
                await exchange.publish(
                    json_message(body), routing_key=run.topo.jobs_routing_key, timeout=5
                )
                break
            except (aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
                print(f"[{run.now():6.1f}s] job {sid} not confirmed ({exc!r}): again", flush=True)
                await asyncio.sleep(0.5)
                if attempt and channel.is_closed:
                    channel = await connection.channel(publisher_confirms=True)
                    exchange = await channel.get_exchange(run.topo.jobs_exchange)
        await asyncio.sleep(run.args.publish_interval_s)
    print(f"[{run.now():6.1f}s] all {len(ids)} jobs published and confirmed", flush=True)


def recovery(run: Run) -> tuple[float, int]:
    """Over all kills: the longest time until a session the killed worker owned (started, not
    finished) got its terminal event, and how many such sessions never got one."""
    worst, never = 0.0, 0
    for killed_at, worker_id in run.kills:
        for history in run.events.values():
            before = [(t, e) for t, e in history if t <= killed_at]
            if not before or before[-1][1]["worker_id"] != worker_id:
                continue
            if before[-1][1]["status"] in (*TERMINAL, "retrying"):
                continue
            after = [t for t, e in history if t > killed_at and e["status"] in TERMINAL]
            if after:
                worst = max(worst, after[0] - killed_at)
            else:
                never += 1
    return worst, never


async def wait_for_outcomes(run: Run, ids: list[str], deadline_s: float) -> None:
    """Until every job has a terminal event, the deadline, or no progress for --stall-s."""
    finished, progress_at, shown_at = -1, run.now(), run.now()
    while run.now() < deadline_s:
        now_finished = sum(1 for sid in ids if run.terminal(sid))
        if now_finished == len(ids):
            return
        if run.now() - shown_at >= 10:
            shown_at = run.now()
            print(f"[{shown_at:6.1f}s] {now_finished}/{len(ids)} jobs have an outcome", flush=True)
        if now_finished != finished:
            finished, progress_at = now_finished, run.now()
        elif run.now() - progress_at > run.args.stall_s:
            print(
                f"[{run.now():6.1f}s] no progress for {run.args.stall_s} s: stop waiting",
                flush=True,
            )
            return
        await asyncio.sleep(0.25)


def report(run: Run, ids: list[str], wall_s: float) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    wrong: list[tuple[str, list[str]]] = []
    copied = 0  # the one outcome delivered again, identical (a reaper republished it: F12)
    for sid in ids:
        every = run.terminal(sid)
        terminal = list({json.dumps(e, sort_keys=True): e for e in every}.values())
        copied += len(terminal) == 1 and len(every) > 1
        for event in terminal:
            kinds[
                event["status"] + (f"({event['reason']})" if event["status"] == "ended" else "")
            ] += 1
            if event["status"] == "failed":
                kinds[f"  failed code {event['error']['code']}"] += 1
        if len(terminal) != 1:
            wrong.append((sid, run.statuses(sid)))
    by_name: dict[str, list[Any]] = defaultdict(list)
    for c in run.sim.conversations.values():
        by_name[str(c.request.get("conversation_name", ""))].append(c)
    duplicates = [n for n, cs in by_name.items() if peak_overlap(cs) > 1]
    started_twice = [  # two `ready` naming different conversations (an adopted one is the same)
        sid
        for sid in ids
        if len({e.get("conversation_id") for _, e in run.events[sid] if e["status"] == "ready"}) > 1
    ]
    readies_repeated = [sid for sid in ids if run.statuses(sid).count("ready") > 1]
    last_outcome_s = max(
        (t for sid in ids for t, e in run.events[sid] if e["status"] in TERMINAL), default=0.0
    )
    leaked = [c.conversation_id for c in run.sim.conversations.values() if c.status == "active"]
    worst_recovery_s, never_recovered = recovery(run)
    cut_short = calls_cut_short(run, ids)
    adopted = [sid for sid in ids for e in run.terminal(sid)[:1] if e.get("adopted_from")]
    tracebacks = traceback_sources(run.log_dir)
    figures = {
        "jobs": len(ids),
        "workers": run.args.workers,
        "worker kills (SIGKILL, restarted)": len(run.kills),
        "broker outages (all workers, s)": run.args.outage_s if run.cut_at_s is not None else 0,
        "broker nodes killed for good": int(run.node_killed_at_s is not None),
        "terminal outcomes": dict(sorted(kinds.items())),
        "jobs without exactly one terminal outcome": len(wrong),
        "jobs whose one outcome came twice (identical copies)": copied,
        "sessions with two live conversations at once": len(duplicates),
        "sessions `ready` twice with different conversations": len(started_twice),
        "sessions `ready` twice with the same (adopted) conversation": len(readies_repeated)
        - len(started_twice),
        "conversations created": len(run.sim.conversations),
        "leaked conversations at the end": len(leaked),
        "leaked rooms at the end": len(run.sim.rooms),
        CUT_SHORT: len(cut_short),
        "sessions adopted from a dead worker (outcome with adopted_from)": len(adopted),
        "max time to recover after a kill (s)": round(worst_recovery_s, 2),
        "sessions of killed workers never finished": never_recovered,
        "Traceback blocks in worker logs": sum(tracebacks.values()),
        "time to the last terminal outcome (s)": round(last_outcome_s, 1),
        "total wall time (s)": round(wall_s, 1),
    }
    print_figures(figures)
    figures["_unfinished"] = [sid for sid, _ in wrong]
    for sid, statuses in wrong[:15]:
        print(f"  not exactly one outcome: {sid}: {statuses}")
    for name in duplicates[:10]:
        print(f"  two live conversations: {name}")
    for sid, how in cut_short[:15]:
        print(f"  call cut short: {sid}: {how}")
    for (event, error), count in tracebacks.most_common():
        print(f"  traceback x{count}: {event}: {error}")
    print(f"worker logs: {run.log_dir}")
    return figures


def print_figures(figures: dict[str, Any]) -> None:
    print("\n== soak figures ==")
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")


def calls_cut_short(run: Run, ids: list[str]) -> list[tuple[str, str]]:
    """Sessions that were `ready` (a call was up) and whose outcome is anything but an end the
    user or the provider caused: (session id, how it ended, by which worker)."""
    found = []
    for sid in ids:
        if "ready" not in run.statuses(sid):
            continue
        ends = [
            f"{e['status']}({e.get('reason') or e.get('error', {}).get('code')}) by "
            f"{e['worker_id']}"
            + (f" adopted from {e['adopted_from']}" if e.get("adopted_from") else "")
            for e in run.terminal(sid)
            if not (e["status"] == "ended" and e["reason"] in CALL_ENDS_OK)
        ]
        if ends:
            found.append((sid, "; ".join(dict.fromkeys(ends))))
    return found


def traceback_sources(log_dir: Path) -> Counter[tuple[str, str]]:
    """Traceback blocks in the workers' JSON logs, by (log event, the exception's last line)."""
    found: Counter[tuple[str, str]] = Counter()
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "Traceback" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                found[("(not JSON)", line[:160])] += line.count("Traceback")
                continue
            text = str(entry.get("exception", ""))
            last = text.strip().splitlines()[-1][:160] if text.strip() else "?"
            found[(str(entry.get("event")), last)] += line.count("Traceback")
    return found


async def cleanup(run: Run, connection: aio_pika.abc.AbstractConnection) -> None:
    await stop_workers(run)
    channel = await connection.channel()
    topo = run.topo
    queues = [
        topo.jobs_queue,
        topo.dead_letter_queue,
        topo.lost_queue,
        events_queue(run),
        *(topo.retry_queue(d) for d in RETRY_DELAYS_S),
        *(topo.record_queue(sid) for sid in run.events),  # records expire only after hours
    ]
    for name in queues:
        try:
            await channel.queue_delete(name)
        except aio_pika.exceptions.AMQPError:
            channel = await connection.channel()
    for exchange in (topo.jobs_exchange, topo.events_exchange, topo.control_exchange):
        try:
            await channel.exchange_delete(exchange)
        except aio_pika.exceptions.AMQPError:
            channel = await connection.channel()
    for proxy in run.proxies:
        await proxy.aclose()


async def stop_workers(run: Run) -> None:
    for worker in run.workers:
        if worker.proc.returncode is None:  # twice: end the sessions now (the figures are in)
            worker.proc.send_signal(signal.SIGTERM)
            worker.proc.send_signal(signal.SIGTERM)
    for worker in run.workers:
        try:
            await asyncio.wait_for(worker.proc.wait(), 15)
        except TimeoutError:
            worker.proc.kill()
            await worker.proc.wait()


async def soak(args: argparse.Namespace) -> int:
    if args.cluster:
        args.amqp_url = (await cluster_script("urls")).strip().splitlines()[-1]
        status = await cluster_script("status")
        if "down" in status:
            raise SystemExit(f"a cluster node is down; run scripts/cluster.sh start:\n{status}")
    elif args.kill_node:
        raise SystemExit("--kill-node needs --cluster (the nodes of scripts/cluster.sh)")
    task = asyncio.ensure_future(soak_on(args, AmqpNodes.parse(args.amqp_url)))
    for sig in (signal.SIGTERM, signal.SIGINT):  # clean-up (the node restart) runs on a signal
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    try:
        return await task
    finally:
        if args.kill_node:  # the cluster is shared: whatever happened, the node comes back
            await cluster_script("restart", str(args.kill_node))


async def restore_node(run: Run) -> None:
    if run.node_killed_at_s is not None:
        await cluster_script("restart", str(run.args.kill_node))
        print(f"[{run.now():6.1f}s] broker node {run.args.kill_node} restarted", flush=True)


async def show_queues(
    run: Run, connection: aio_pika.abc.AbstractConnection, unfinished: list[str]
) -> None:
    """For the record: what the broker still holds for the jobs without one outcome."""
    if not unfinished:
        return
    names = [run.topo.jobs_queue, run.topo.lost_queue, run.topo.dead_letter_queue]
    names += [run.topo.record_queue(sid) for sid in unfinished[:20]]
    for name in names:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            held = f"{result.message_count} ready message(s), {result.consumer_count} consumer(s)"
        except aio_pika.exceptions.AMQPError as exc:
            held = f"not there ({type(exc).__name__})"
        print(f"  queue {name}: {held}", flush=True)
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.close()
    if run.args.cluster:  # the jobs handed out and not settled yet, and to which connections
        with contextlib.suppress(Exception):
            listed = await cluster_script(
                "ctl", "1", "list_queues", "name", "messages_unacknowledged", "consumers"
            )
            print(f"  unacked: {[ln for ln in listed.splitlines() if run.topo.jobs_queue in ln]}")
            consumers = await cluster_script(
                "ctl", "1", "list_consumers", "queue_name", "channel_pid"
            )
            print(
                f"  job consumers: {[c for c in consumers.splitlines() if run.topo.jobs_queue in c]}"
            )
            channels = await cluster_script(
                "ctl", "1", "list_channels", "name", "consumer_count", "messages_unacknowledged"
            )
            holding = [c for c in channels.splitlines()[1:] if c.split("\t")[-1] not in ("0", "")]
            print(f"  channels holding messages: {holding}")
            connections = await cluster_script(
                "ctl", "1", "list_connections", "name", "user_provided_name", "state"
            )
            print(f"  connections: {connections.splitlines()[1:]}")


async def soak_on(args: argparse.Namespace, nodes: AmqpNodes) -> int:
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    sim = Simulator(
        tavus_api_keys={TAVUS_KEY},
        daily_rate_limits=False,
        replica_join_delay_s=0.05,
        sweep_interval_s=0.1,
    )
    proxies = [BrokerProxy(node.host, node.port) for node in nodes]
    for proxy in proxies:
        await proxy.start()
    # This process's own connection goes straight to the nodes, the one to be killed last.
    doomed = args.kill_node - 1 if args.kill_node else len(nodes)
    own = AmqpNodes(tuple(n for i, n in enumerate(nodes) if i != doomed) + nodes.nodes[doomed:][:1])
    async with sim.running(host="127.0.0.1", port=0):
        log_dir = Path(tempfile.mkdtemp(prefix="soak-logs-"))
        run = Run(args, sim, topology(prefix), nodes, proxies, log_dir)
        connection = await connect_any(own, timeout_s=30)
        try:
            events_channel = await connection.channel()
            await declare_job_topology(events_channel, run.topo)
            await collect_events(run, events_channel)
            ids = [f"soak-{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(args.jobs)]
            run.workers = list(await asyncio.gather(*(spawn(run, i) for i in range(args.workers))))
            print(
                f"[{run.now():6.1f}s] {args.workers} workers up on {len(nodes)} node(s); "
                f"publishing {args.jobs} jobs",
                flush=True,
            )
            run.started_s = time.monotonic()
            done = asyncio.Event()
            tasks = [
                asyncio.create_task(stopper(run, connection, done)),
                asyncio.create_task(chaos(run, ids, done)),
                asyncio.create_task(publish_jobs(run, connection, ids)),
            ]
            await wait_for_outcomes(run, ids, deadline_s=args.timeout_s - args.settle_s)
            done.set()
            _, pending = await asyncio.wait(tasks, timeout=15)  # a restart may still be going on
            for task in pending:
                task.cancel()
            for task, result in zip(
                tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
            ):
                if isinstance(result, Exception):
                    print(f"soak task {task.get_coro().__name__} failed: {result!r}", flush=True)
            wall_s = run.now()
            await asyncio.sleep(args.settle_s)  # late duplicates surface; reapers sweep leftovers
            figures = report(run, ids, wall_s)
            await show_queues(run, connection, figures.pop("_unfinished"))
        finally:
            await restore_node(run)  # before the clean-up: deleting a quorum queue waits for it
            try:
                await asyncio.wait_for(cleanup(run, connection), 300)
            except TimeoutError:
                print(f"clean-up took over 300 s; queues {run.topo.jobs_queue}.* may be left")
            await connection.close()
    bad = (
        figures["jobs without exactly one terminal outcome"]
        + figures["sessions with two live conversations at once"]
        + figures["leaked conversations at the end"]
        + figures["leaked rooms at the end"]
        + figures[CUT_SHORT]
        + figures["Traceback blocks in worker logs"]  # a traceback is a defect or an unnamed path
    )
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--max-sessions", type=int, default=25, help="WORKER_MAX_SESSIONS")
    parser.add_argument("--kills", type=int, default=4, help="random SIGKILLs (each restarted)")
    parser.add_argument("--outage-s", type=float, default=3.0, help="length of the broker outage")
    parser.add_argument("--hold-min-s", type=float, default=0.2)
    parser.add_argument("--hold-max-s", type=float, default=2.0)
    parser.add_argument("--publish-interval-s", type=float, default=0.02)
    parser.add_argument("--reaper-interval-s", type=float, default=1.0)
    parser.add_argument(
        "--reaper-grace-s", type=float, default=6.0, help="longer than --outage-s + reconnect"
    )
    parser.add_argument(
        "--stall-s", type=float, default=45.0, help="stop waiting after this long without progress"
    )
    parser.add_argument("--settle-s", type=float, default=8.0)
    parser.add_argument("--timeout-s", type=float, default=600.0, help="the whole run's bound")
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="one node, or a cluster's nodes comma-separated",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the local 3-node cluster (scripts/cluster.sh urls)"
    )
    parser.add_argument(
        "--kill-node",
        type=int,
        default=0,
        choices=(0, 1, 2, 3),
        help="with --cluster: SIGKILL this node for good mid-run (restarted at the end)",
    )
    parser.add_argument(
        "--node-kill-at",
        type=float,
        default=0.3,
        help="kill the node once this share of the jobs has an outcome",
    )
    args = parser.parse_args()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
