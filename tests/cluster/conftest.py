"""A real 3-node RabbitMQ cluster for the tests in this package, never mocked and never silently
skipped: where none can be started, every test here fails and says how to get one. A test may kill
and restart nodes; each node it killed is back before the next test starts. The cluster comes from
scripts/cluster.sh, or from the script AVATAR_CLUSTER_SCRIPT names with the same commands
(scripts/docker-cluster.sh: RabbitMQ 4 in containers); a cluster the tests started is destroyed
after them, one already running is left running.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from worker.amqp_nodes import AmqpNodes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_ENV = "AVATAR_CLUSTER_SCRIPT"  # the RabbitMQ 4 pass sets scripts/docker-cluster.sh
SCRIPT = ROOT / os.environ.get(SCRIPT_ENV, "scripts/cluster.sh")  # an absolute path stays as is
URLS_ENV = "AVATAR_CLUSTER_URLS"  # set by scripts/test once it has started the cluster
START_TIMEOUT_S = 240.0
NODE_TIMEOUT_S = 120.0
HOW_TO_GET_A_CLUSTER = (
    "These tests need a local 3-node RabbitMQ cluster and could not get one from {script}:\n"
    "{error}\nStart it with `scripts/cluster.sh start` (as root, with rabbitmq-server installed:\n"
    "`apt-get install rabbitmq-server`, which scripts/test does), or with\n"
    f"`scripts/docker-cluster.sh start` and {SCRIPT_ENV}=scripts/docker-cluster.sh (Docker), or set "
    f"{URLS_ENV} to your own cluster's nodes (amqp://u:p@host1:5672/,amqp://u:p@host2:5672/,...)."
)


class ClusterError(AssertionError):
    """The cluster script failed; the message carries what it said."""


@dataclass
class Cluster:
    """The cluster's nodes, 0-based: `urls[i]` (or `url(i)`) is node i; `kill(i)` and `restart(i)`
    act on it through the cluster script. Nodes killed by a test are restarted after it."""

    urls: list[str]
    is_managed: bool  # False when the nodes came from AVATAR_CLUSTER_URLS: kill/restart refuse
    is_ours: bool = False  # started by these tests (not running before): destroyed after them
    killed: set[int] = field(default_factory=set)

    def url(self, i: int) -> str:
        return self.urls[i]

    @property
    def amqp_url(self) -> str:
        """Every node, comma-separated, as AMQP_URL takes them."""
        return ",".join(self.urls)

    def nodes(self, **query: str | float) -> AmqpNodes:
        """The nodes as AmqpNodes, with these query parameters on every URL (name=,
        reconnect_interval=, heartbeat=...)."""
        return AmqpNodes.parse(self.amqp_url).with_query(**query)

    async def kill(self, i: int) -> None:
        """SIGKILL node i; it stays down until `restart(i)` or the end of the test."""
        self.killed.add(i)
        await self._script("kill", str(i + 1))

    async def restart(self, i: int) -> None:
        """Start node i again with its data; it rejoins the cluster (returns once it serves)."""
        await self._script("restart", str(i + 1))
        self.killed.discard(i)

    async def recreate(self, i: int) -> None:
        """Replace node i by an empty node (the others forget the old one): a node lost for good
        and replaced. Quorum queues declared before keep their members on the other nodes."""
        self.killed.add(i)
        await self._script("recreate", str(i + 1))
        self.killed.discard(i)

    async def rabbitmqctl(self, i: int, *args: str) -> str:
        """`rabbitmqctl ARGS` against node i (e.g. "list_queues", "close_connection"); its output."""
        return await self._script("ctl", str(i + 1), *args)

    async def heal(self) -> None:
        """Restart every node a test killed. A test deletes its quorum queues after this:
        deleting one waits for its members (on RabbitMQ 4 with a node down, a few queues took
        26 s, and once hung for 10 min)."""
        for i in sorted(self.killed):
            await self.restart(i)

    async def _script(self, *args: str) -> str:
        if not self.is_managed:
            raise ClusterError(f"{URLS_ENV} names an outside cluster: cannot {args[0]} its nodes")
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ClusterError(
                f"{SCRIPT.name} {' '.join(args)} took over {NODE_TIMEOUT_S} s"
            ) from None
        if proc.returncode != 0:
            said = (out + err).decode(errors="replace")[-1500:]
            raise ClusterError(f"{SCRIPT.name} {' '.join(args)} failed: {said}")
        return out.decode()


def call_script(command: str) -> subprocess.CompletedProcess[str]:
    """Run the cluster script with COMMAND (OSError or TimeoutExpired when it cannot be run)."""
    return subprocess.run(
        [str(SCRIPT), command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )


def run_script(command: str) -> str:
    """The cluster script's last line of output for COMMAND; fails the test with instructions
    when it fails."""
    try:
        done = call_script(command)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(HOW_TO_GET_A_CLUSTER.format(script=SCRIPT, error=exc), pytrace=False)
    if done.returncode != 0 or not done.stdout.strip():
        error = done.stderr[-1500:]
        pytest.fail(HOW_TO_GET_A_CLUSTER.format(script=SCRIPT, error=error), pytrace=False)
    return done.stdout.strip().splitlines()[-1]


def is_running() -> bool:
    """Every node of the script's cluster says it is up (each `status` line ends in "up")."""
    try:
        done = call_script("status")
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = done.stdout.strip().splitlines()
    return done.returncode == 0 and bool(lines) and all(ln.split()[-1] == "up" for ln in lines)


def start_cluster() -> Cluster:
    """The local cluster, started or reused (and any node left down brought back); or the
    cluster AVATAR_CLUSTER_URLS names when that is not the local one (its nodes are not ours to
    kill)."""
    listed = os.environ.get(URLS_ENV, "")
    if listed and listed != run_script("urls"):
        return Cluster(urls=listed.split(","), is_managed=False)
    was_running = is_running()
    return Cluster(urls=run_script("start").split(","), is_managed=True, is_ours=not was_running)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The 3-node cluster (started, or reused when it already runs); fails with instructions when
    it cannot be had. One it started is destroyed at the end of the run (no nodes or containers
    left behind)."""
    cluster = start_cluster()
    yield cluster
    if cluster.is_ours:
        done = call_script("destroy")
        assert done.returncode == 0, f"{SCRIPT.name} destroy failed: {done.stderr[-1500:]}"


@pytest.fixture(autouse=True)
async def _whole_cluster_after_each_test(cluster: Cluster) -> AsyncIterator[None]:
    """Every node a test killed is running again before the next test."""
    yield
    await cluster.heal()
