"""The promise on a 3-node RabbitMQ cluster: no fault of our own infrastructure (a broker node, a
worker process, a worker's link to its node) ends a user's call or loses a session's outcome.

Real worker processes, each listing every node with a different one first, run phoenix_rest
sessions against the simulator; a test breaks one part, then stops every session and checks that
each got exactly one outcome, `stopped`, and that no conversation is left or doubled.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from tavus.sim import Simulator
from tests.cluster.conftest import Cluster
from tests.cluster.proxy import NodeProxy
from tests.reliability.env import ReliabilityHarness
from tests.worker.harness import job

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SESSIONS = 6
# Short leases and grace so that a lost worker's sessions are adopted within seconds.
WORKER: dict[str, Any] = {
    "worker_reaper_interval_s": 0.5,
    "worker_reaper_grace_s": 3.0,
    "worker_session_lease_s": 2.0,
    "worker_max_sessions": 20,
}


def node_order(cluster: Cluster, first: int) -> str:
    """AMQP_URL listing every node, node `first` first (reconnecting fast, heartbeats of 2 s)."""
    urls = cluster.nodes(reconnect_interval=0.5, heartbeat=2).url.split(",")
    return ",".join(urls[first:] + urls[:first])


@pytest.fixture
async def h(cluster: Cluster, sim: Simulator) -> AsyncIterator[ReliabilityHarness]:
    """A harness on the cluster (its own connection on node 2, its event tap a quorum queue),
    cleaned up once every node the test killed is back: deleting a quorum queue waits for its
    members (on RabbitMQ 4 a clean-up with a node down took 26 s, and once hung for 10 min)."""
    harness = ReliabilityHarness(node_order(cluster, 2), sim)
    await harness.start(durable_tap=True)
    try:
        yield harness
    finally:
        await cluster.heal()
        await harness.aclose()


async def spawn_workers(
    h: ReliabilityHarness, cluster: Cluster, nodes: list[int], **overrides: Any
) -> list[asyncio.subprocess.Process]:
    return [
        await h.spawn_capturing(
            amqp_url=SecretStr(node_order(cluster, first)), **{**WORKER, **overrides}
        )
        for first in nodes
    ]


async def start_sessions(h: ReliabilityHarness, count: int = SESSIONS) -> dict[str, str]:
    """Publish `count` jobs; {session id: its conversation id} once every one is ready."""
    sids = []
    for _ in range(count):
        body = job()
        await h.publish(body)
        sids.append(body["session_id"])
    ready = [await h.wait_for(sid, "ready", timeout_s=60) for sid in sids]
    await asyncio.sleep(1.0)  # the jobs' acks and the ready records land
    return {sid: str(event["conversation_id"]) for sid, event in zip(sids, ready, strict=True)}


async def assert_calls_went_on_and_stop_once(
    h: ReliabilityHarness, sessions: dict[str, str], *, settle_s: float
) -> list[dict[str, Any]]:
    """After `settle_s`, no call was cut and no outcome is out; then a stop ends each session
    exactly once, `stopped`, and nothing is left active at Tavus. The outcomes, returned."""
    await asyncio.sleep(settle_s)
    cut = {sid: h.terminal(sid) for sid in sessions if h.terminal(sid)}
    assert cut == {}, f"calls ended though nobody stopped them: {cut}"
    inactive = [cid for cid in sessions.values() if h.sim.conversations[cid].status != "active"]
    assert inactive == [], "conversations ended under their users"
    for sid in sessions:
        await h.stop_session(sid)
    outcomes = []
    for sid in sessions:
        outcomes.append(await h.wait_terminal(sid, timeout_s=60))
    await asyncio.sleep(3.0)  # later leases, sweeps and retakes add nothing
    counts = {sid: [e["status"] for e in h.terminal(sid)] for sid in sessions}
    assert all(len(statuses) == 1 for statuses in counts.values()), counts
    assert [o.get("reason") for o in outcomes] == ["stopped"] * len(sessions), outcomes
    assert h.active_conversations() == []
    assert all(len(h.created_conversations(sid)) == 1 for sid in sessions), "a call was doubled"
    return outcomes


async def test_a_node_killed_for_good_cuts_no_call_and_loses_no_outcome(
    h: ReliabilityHarness, cluster: Cluster
) -> None:
    """Kill the node one worker is connected to, for good, while every session is live: that
    worker moves to another node, no call ends, and each session later gets its one outcome."""
    await spawn_workers(h, cluster, [0, 1, 1])
    sessions = await start_sessions(h)
    await cluster.kill(0)
    await assert_calls_went_on_and_stop_once(h, sessions, settle_s=10.0)


async def test_a_node_that_crashes_and_comes_back_cuts_no_call(
    h: ReliabilityHarness, cluster: Cluster
) -> None:
    """A node crashes and restarts with its data 15 s later: no call ends, no outcome is lost."""
    await spawn_workers(h, cluster, [0, 1, 0])
    sessions = await start_sessions(h)
    await cluster.kill(0)
    await asyncio.sleep(15.0)
    await cluster.restart(0)
    await assert_calls_went_on_and_stop_once(h, sessions, settle_s=3.0)


async def test_a_worker_cut_off_from_its_node_past_the_grace_loses_its_sessions_silently(
    h: ReliabilityHarness, cluster: Cluster
) -> None:
    """A worker that can reach only its node is cut off from it for longer than the reapers'
    grace: another worker adopts its live sessions, so no call ends; once back, the cut-off
    worker finds its claims taken and publishes nothing for them."""
    proxy = await NodeProxy.to(cluster.url(0))
    try:
        cut_off = await h.spawn_capturing(
            amqp_url=SecretStr(proxy.url_for(node_order(cluster, 0).split(",")[0])),
            **{**WORKER, "worker_max_sessions": SESSIONS},
        )
        sessions = await start_sessions(h)
        starters = {h.of(sid)[0]["worker_id"] for sid in sessions}
        assert len(starters) == 1, "every session starts on the worker that is cut off"
        await spawn_workers(h, cluster, [1])
        proxy.cut()
        await asyncio.sleep(WORKER["worker_reaper_grace_s"] + 12.0)  # lapses, grace, adoption
        proxy.restore()
        await asyncio.sleep(5.0)  # it reconnects and finds its claims taken
        outcomes = await assert_calls_went_on_and_stop_once(h, sessions, settle_s=0.0)
        assert all(o.get("adopted_from") for o in outcomes), outcomes
        assert cut_off.returncode is None  # it lived through it
    finally:
        await proxy.aclose()


async def test_sigkilled_worker_following_live_sessions_has_them_adopted_on_the_cluster(
    h: ReliabilityHarness, cluster: Cluster
) -> None:
    """SIGKILL the worker that follows every live phoenix_rest session: the others adopt them all
    (not worker_lost), and each stop then ends its session once, naming the dead worker."""
    (victim,) = await spawn_workers(h, cluster, [0])
    sessions = await start_sessions(h)
    dead_id = h.of(next(iter(sessions)))[0]["worker_id"]
    await spawn_workers(h, cluster, [1, 2])
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await asyncio.sleep(WORKER["worker_reaper_grace_s"] + 8.0)  # lapses, grace, adoption
    outcomes = await assert_calls_went_on_and_stop_once(h, sessions, settle_s=0.0)
    assert {o["adopted_from"] for o in outcomes} == {dead_id}
    assert dead_id not in {o["worker_id"] for o in outcomes}
