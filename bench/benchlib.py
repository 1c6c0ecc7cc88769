"""What the benchmark phases share: percentiles, /proc figures, the simulator process, worker
processes (their JSON log lines parsed), a producer that times every event it gets via reply_to,
and per-phase broker names that are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.amqp_connection import MultiNodeConnection, connect_any  # noqa: E402
from worker.amqp_nodes import AmqpNodes  # noqa: E402
from worker.broker import Topology, declare_job_topology  # noqa: E402

# The broker the phases use: one node, or a cluster's nodes comma-separated (`use_cluster`).
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CLUSTER_SCRIPT = REPO / "scripts" / "cluster.sh"
RABBITMQCTL: list[str] = ["rabbitmqctl"]  # lists queues for `sweep_leftovers`
TAVUS_KEY = "sim-tavus-key"
DAILY_KEY = "sim-daily-key"
REPLICA = "r90bbd427f71"
DEFAULT_RETRY_DELAYS_S = (2.0, 10.0, 30.0, 60.0)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- numbers ------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


# --- /proc ----------------------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def broker_pid() -> int | None:
    """The beam.smp of AMQP_URL's first node, when it runs on this machine (else None)."""
    pids = broker_pids()
    return pids[0] if pids else None


def broker_pids(url: str | None = None) -> list[int]:
    """The local beam.smp of each node of `url` (default AMQP_URL) that runs here and is up: the
    process that holds the node's listening AMQP socket. Several RabbitMQ nodes may run on this
    machine (a single broker beside a cluster's nodes), so the port, not the name, decides."""
    pids = []
    for node in AmqpNodes.parse(url or AMQP_URL):
        inodes = _listening_inodes(node.port)
        pid = _socket_owner(inodes) if inodes else None
        if pid is not None:
            pids.append(pid)
    return pids


def broker_cpu_s(url: str | None = None) -> float:
    """CPU seconds so far of every local node of `url` (NaN when none runs here)."""
    pids = broker_pids(url)
    return sum(cpu_s(p) for p in pids) if pids else math.nan


def _listening_inodes(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    found.add(cols[9])
    return found


def _socket_owner(inodes: set[str]) -> int | None:
    links = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if b"beam.smp" not in (proc / "cmdline").read_bytes():
                continue
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in links:
                        return int(proc.name)
    return None


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": str(os.cpu_count()), "cpu": model, "load": f"{os.getloadavg()[0]:.2f}"}


# --- the broker ---------------------------------------------------------------------------------
def cluster_urls() -> str:
    """The local 3-node cluster's AMQP_URL list (`scripts/cluster.sh urls`)."""
    done = subprocess.run(
        [str(CLUSTER_SCRIPT), "urls"], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip().splitlines()[-1]


def use_cluster() -> str:
    """Point every phase (and the workers and baselines they start) at the local cluster."""
    global AMQP_URL
    AMQP_URL = cluster_urls()
    RABBITMQCTL[:] = [str(CLUSTER_SCRIPT), "ctl", "1"]
    return AMQP_URL


async def connect(url: str | None = None, timeout_s: float = 30) -> MultiNodeConnection:
    """A robust connection to `url` (default AMQP_URL): one node or a list, as the worker's."""
    return await connect_any(url or AMQP_URL, timeout_s=timeout_s)


# --- the simulator ------------------------------------------------------------------------------
class HasBaseUrl(Protocol):
    """A simulator: this process's `SimProcess`, or an in-process `tavus.sim.Simulator`."""

    base_url: str


class SimProcess:
    """bench/simproc.py in its own process, driven over its HTTP control endpoints."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self._http = httpx.AsyncClient(timeout=60)
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "bench" / "simproc.py"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line.startswith(b"BASE "):
            raise SystemExit(f"the simulator did not start: {line!r}")
        self.base_url = line.split()[1].decode()
        self._drain = asyncio.create_task(self._drain_stdout())

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def reset(self) -> None:
        (await self._http.post(f"{self.base_url}/_sim/reset")).raise_for_status()

    async def latency(self, endpoint: str, seconds: float) -> None:
        body = {"endpoint": endpoint, "seconds": seconds}
        (
            await self._http.post(f"{self.base_url}/_sim/faults/latency", json=body)
        ).raise_for_status()

    async def seed_ended(self, n: int) -> None:
        (
            await self._http.post(f"{self.base_url}/_bench/seed-ended", json={"n": n})
        ).raise_for_status()

    async def calls(self) -> dict[str, Any]:
        """Provider calls since the last read, by provider and endpoint (clears the record)."""
        reply = await self._http.get(f"{self.base_url}/_bench/calls")
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    async def aclose(self) -> None:
        await self._http.aclose()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# --- broker names for one phase ---------------------------------------------------------------
def new_topology(run_id: str, phase: str) -> Topology:
    prefix = f"bench{run_id}.{phase}"
    return Topology(
        jobs_exchange=f"{prefix}.jobs",
        jobs_queue=f"{prefix}.sessions",
        events_exchange=f"{prefix}.events",
        control_exchange=f"{prefix}.control",
        dead_letter_queue=f"{prefix}.sessions.dead",
    )


def worker_env(topo: Topology, sim: HasBaseUrl, worker_id: str, **settings: Any) -> dict[str, str]:
    """The environment of a `python -m worker.cli run` process against the simulator."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAVUS_", "DAILY_", "AMQP_", "WORKER_", "PIPELINE_", "LOG_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        TAVUS_API_KEY=TAVUS_KEY,
        TAVUS_BASE_URL=f"{sim.base_url}/v2",
        TAVUS_DEFAULT_REPLICA_ID=REPLICA,
        TAVUS_AVATAR_MODE="phoenix_rest",
        DAILY_API_URL=f"{sim.base_url}/v1",
        AMQP_URL=AMQP_URL,
        AMQP_JOBS_EXCHANGE=topo.jobs_exchange,
        AMQP_JOBS_QUEUE=topo.jobs_queue,
        AMQP_EVENTS_EXCHANGE=topo.events_exchange,
        AMQP_CONTROL_EXCHANGE=topo.control_exchange,
        AMQP_DEAD_LETTER_QUEUE=topo.dead_letter_queue,
        WORKER_ID=worker_id,
        WORKER_DRAIN_TIMEOUT_S="0",
        WORKER_STATUS_HOST="127.0.0.1",
        WORKER_STATUS_PORT="0",  # several workers on one machine
        LOG_FORMAT="json",
    )
    env.update({k.upper(): str(v) for k, v in settings.items()})
    return env


PIPECAT_SETTINGS: dict[str, Any] = {
    "tavus_avatar_mode": "pipecat_daily",
    "daily_api_key": DAILY_KEY,
    "deepgram_api_key": "fake-deepgram-key",
    "openai_api_key": "fake-openai-key",
    "cartesia_api_key": "fake-cartesia-key",
    "worker_pipeline_hook": "tests.worker.session_hooks:sim_avatar",
}


# bench/baseline.py's variants: with the worker's claim and session record, or bare.
BASELINES = {"guarded": {"BASELINE_GUARANTEES": "1"}, "bare": {}}


# --- worker processes -------------------------------------------------------------------------
@dataclass
class WorkerProcess:
    """A worker (or baseline) process; its JSON log lines are kept for the phases to read."""

    argv: list[str]
    env: dict[str, str]
    ready_line: bytes = b"intake.consuming"
    proc: asyncio.subprocess.Process | None = None
    spawned_at: float = 0.0
    consuming_at: float = 0.0
    logs: list[dict[str, Any]] = field(default_factory=list)
    tail: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=8))
    _reader: asyncio.Task[None] | None = None
    _consuming: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def worker(cls, env: dict[str, str]) -> WorkerProcess:
        return cls([sys.executable, "-m", "worker.cli", "run"], env)

    @classmethod
    def baseline(cls, env: dict[str, str], variant: str) -> WorkerProcess:
        """bench/baseline.py in one of its BASELINES variants, with a worker's environment."""
        return cls([sys.executable, str(REPO / "bench" / "baseline.py")], env | BASELINES[variant])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout_s: float = 60) -> None:
        self.spawned_at = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd="/tmp",  # no project .env is read
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        waiter = asyncio.create_task(self._consuming.wait())
        done, _ = await asyncio.wait(
            {waiter, self._reader}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            tail = b" | ".join(self.tail).decode(errors="replace")
            code = self.proc.returncode
            raise SystemExit(f"{self.argv[-1]} did not start consuming (exit {code}): {tail}")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            if self.ready_line in line and not self._consuming.is_set():
                self.consuming_at = time.perf_counter()
                self._consuming.set()
            self.tail.append(line[:300])
            with contextlib.suppress(ValueError):
                self.logs.append(json.loads(line))

    def find_logs(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == event]

    async def stop(self, *, graceful_s: float = 0) -> None:
        """SIGTERM and wait up to graceful_s (0: SIGKILL at once)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if graceful_s > 0:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), graceful_s)
        if self.proc.returncode is None:
            # The worker's session processes are its children: take them down too.
            for child in children_of(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


# --- the producer -----------------------------------------------------------------------------
@dataclass
class Timing:
    published_at: float = math.nan
    seen: dict[str, float] = field(default_factory=dict)  # status -> perf_counter on receipt
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


class Producer:
    """Publishes jobs (with confirms, reply_to its own queue) and times every event it gets."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection, topo: Topology) -> None:
        self._connection = connection
        self.topo = topo
        self.timings: dict[str, Timing] = {}
        self.reply_queue = ""
        self._changed = asyncio.Event()
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=True)
        await declare_job_topology(self._channel, self.topo)
        self._exchange = await self._channel.get_exchange(self.topo.jobs_exchange)
        replies = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        self.reply_queue = replies.name
        await replies.consume(self._on_event, no_ack=True)

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        event = json.loads(message.body)
        timing = self.timings.setdefault(event["session_id"], Timing())
        timing.seen.setdefault(event["status"], now)
        timing.events.setdefault(event["status"], event)
        self._changed.set()

    async def publish(self, session_id: str, **fields: Any) -> None:
        assert self._exchange is not None
        body = json.dumps({"session_id": session_id, **fields}).encode()
        timing = self.timings.setdefault(session_id, Timing())
        timing.published_at = time.perf_counter()
        await self._exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                reply_to=self.reply_queue,
                correlation_id=session_id,
            ),
            routing_key=self.topo.jobs_routing_key,
        )

    async def publish_at_rate(
        self, session_ids: list[str], rate_per_s: float, **fields: Any
    ) -> None:
        """One job every 1/rate seconds (each publish in its own task, so confirms overlap)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i, sid in enumerate(session_ids):
            delay = start + i / rate_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.publish(sid, **fields)))
        await asyncio.gather(*tasks)

    async def publish_burst(self, session_ids: list[str], **fields: Any) -> None:
        await asyncio.gather(*(self.publish(sid, **fields) for sid in session_ids))

    async def wait_all(
        self,
        session_ids: list[str],
        status: str,
        timeout_s: float,
        failed: Callable[[Timing], bool] = lambda t: "failed" in t.seen,
    ) -> None:
        """Until every session saw `status` (or failed); SystemExit on timeout."""
        deadline = time.perf_counter() + timeout_s
        while True:
            missing = [
                s
                for s in session_ids
                if status not in self.timings.get(s, Timing()).seen
                and not failed(self.timings.get(s, Timing()))
            ]
            if not missing:
                return
            left = deadline - time.perf_counter()
            if left <= 0:
                raise SystemExit(
                    f"{len(missing)} of {len(session_ids)} sessions saw no "
                    f"{status!r} within {timeout_s} s (e.g. {missing[0]})"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    async def stop_session(self, session_id: str) -> None:
        assert self._channel is not None
        exchange = await self._channel.declare_exchange(
            self.topo.control_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await exchange.publish(
            aio_pika.Message(
                json.dumps({"session_id": session_id}).encode(), content_type="application/json"
            ),
            routing_key="session.stop",
        )

    async def aclose(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


def session_ids(tag: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"b{tag}-{run}-{i}" for i in range(n)]


async def delete_topology(
    connection: aio_pika.abc.AbstractRobustConnection, topo: Topology, sids: list[str]
) -> None:
    """Delete a phase's queues (jobs, dead letters, retries, session records) and exchanges."""
    queues = [
        topo.jobs_queue,
        topo.dead_letter_queue,
        f"{topo.jobs_queue}.lost",  # the reaper's queue of run-out session leases
        *(topo.retry_queue(d) for d in DEFAULT_RETRY_DELAYS_S),
        *(topo.record_queue(s) for s in sids),
    ]
    channel = await connection.channel()
    for queue in queues:
        try:
            await channel.queue_delete(queue)
        except aio_pika.exceptions.AMQPError:
            channel = await connection.channel()
    for exchange in (topo.jobs_exchange, topo.events_exchange, topo.control_exchange):
        try:
            await channel.exchange_delete(exchange)
        except aio_pika.exceptions.AMQPError:
            channel = await connection.channel()
    with contextlib.suppress(aio_pika.exceptions.AMQPError):
        await channel.close()


async def sweep_leftovers(connection: aio_pika.abc.AbstractRobustConnection, prefix: str) -> int:
    """Delete queues and exchanges named `prefix*` that a phase could not (e.g. declared by a worker after its
    phase's clean-up). Needs a local `rabbitmqctl`; without it, nothing is swept."""
    if shutil.which(RABBITMQCTL[0]) is None:
        return 0
    swept = 0
    for kind in ("queues", "exchanges"):
        lister = await asyncio.create_subprocess_exec(
            *RABBITMQCTL, f"list_{kind}", "-q", "--no-table-headers", "name",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(lister.communicate(), 60)
        names = [n for n in out.decode().split() if n.startswith(prefix)]
        channel = await connection.channel()
        for name in names:
            try:
                if kind == "queues":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.close()
        swept += len(names)
    return swept
