"""Broker faults: a worker's connection cut by the broker (CONNECTION_FORCED, as in a broker
restart or a network blip), a consumer cancelled by the server, a broker that is not there at
start-up, and (opt-in) a real broker restart.

Connections are cut one at a time by name (`rabbitmqctl close_connection`), not with
`close_all_connections` or a restart, because other suites share the local RabbitMQ node.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys

import pytest

from tests.reliability.env import (
    ReliabilityHarness,
    cut_connections,
    poll_until,
    rabbitmqctl,
    wait_connected,
)
from tests.worker.harness import job
from worker.app import WorkerApp

pytestmark = pytest.mark.broker

# The connection-cut tests close a named connection on the broker node; with a remote broker
# (no rabbitmqctl here) the proxy-based outage tests below cover the same faults.
NEEDS_RABBITMQCTL = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None,
    reason="needs rabbitmqctl for the local RabbitMQ node (the proxy outage tests still run)",
)


def alive(h: ReliabilityHarness) -> None:
    for app, task in h.workers:
        if task.done():
            raise AssertionError(f"worker {app.settings.worker_id} exited: {task.exception()!r}")


async def stop_all(h: ReliabilityHarness, session_ids: list[str]) -> None:
    for sid in session_ids:
        await h.stop_session(sid)
    for sid in session_ids:
        await h.wait_terminal(sid)


@pytest.mark.slow
@NEEDS_RABBITMQCTL
async def test_connection_cut_keeps_live_sessions_and_loses_no_queued_job(
    h: ReliabilityHarness,
) -> None:
    """After its connection is cut, a worker reconnects and restores its consumers: live sessions
    go on and end once when stopped, and queued jobs (and jobs sent during the cut) all run."""
    name = h.connection_name()
    await h.start_named_worker(name, worker_max_sessions=3)
    live = [job() for _ in range(3)]
    queued = [job() for _ in range(3)]
    for body in live:
        await h.publish(body)
    for body in live:
        await h.wait_for(body["session_id"], "ready")
    for body in queued:
        await h.publish(body)
    await asyncio.sleep(0.3)
    assert await h.queue_depth() == 3  # the worker is full: they wait in the queue

    assert await cut_connections(name) == 1
    late = job()
    await h.publish(late)  # sent while the worker is away
    await wait_connected(name)
    await asyncio.sleep(1.5)  # channels reopen a second after the connection
    alive(h)
    for body in live:  # the live sessions survived the cut
        sid = body["session_id"]
        assert h.statuses(sid) == ["accepted", "ready"]
        [cid] = h.created_conversations(sid)
        assert h.sim.conversations[cid].status == "active"

    everyone = [b["session_id"] for b in (*live, *queued, late)]
    await stop_all(h, everyone[:3])
    for sid in everyone[3:]:  # three slots for four jobs: stop each one once it is ready
        await h.wait_for(sid, "ready", timeout_s=20)
        await stop_all(h, [sid])
    alive(h)
    for sid in everyone:
        assert h.statuses(sid) == ["accepted", "ready", "ended"], (sid, h.statuses(sid))
        assert h.terminal(sid)[0]["reason"] == "stopped"
        assert len(h.created_conversations(sid)) == 1
    await asyncio.sleep(0.2)
    assert h.active_conversations() == []
    assert await h.queue_depth() == 0
    assert await h.queue_depth(h.topo.dead_letter_queue) == 0


@pytest.mark.slow
@NEEDS_RABBITMQCTL
async def test_connection_cut_while_provisioning_starts_the_session_once(
    h: ReliabilityHarness,
) -> None:
    """A cut while a job is provisioning requeues it at the broker; the worker dedupes the
    redelivery, its stale ack fails quietly, and the session still gets one conversation."""
    name = h.connection_name()
    await h.start_named_worker(name)
    h.sim.faults.latency("POST /v2/conversations", 1.5)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "accepted")
    await asyncio.sleep(0.3)  # the create is in flight at Tavus
    assert await cut_connections(name) == 1
    await h.wait_for(sid, "ready", timeout_s=20)
    await wait_connected(name)
    await asyncio.sleep(2.0)  # the redelivered copy has been looked at
    alive(h)
    assert h.statuses(sid) == ["accepted", "ready"]
    assert len(h.created_conversations(sid)) == 1
    await stop_all(h, [sid])
    assert h.statuses(sid) == ["accepted", "ready", "ended"]
    assert h.active_conversations() == []
    assert await h.queue_depth() == 0
    assert await h.queue_depth(h.topo.dead_letter_queue) == 0


@pytest.mark.slow
@NEEDS_RABBITMQCTL
async def test_connection_cut_while_provisioning_with_a_second_worker_starts_the_session_once(
    h: ReliabilityHarness,
) -> None:
    """When the requeued job goes to another worker, the session still never has two live
    conversations or two outcomes, and the first worker gets its connection back."""
    name = h.connection_name()
    await h.start_named_worker(name)
    h.sim.faults.latency("POST /v2/conversations", 1.5)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "accepted")
    await h.start_worker()  # idle: it takes the job the broker requeues
    await asyncio.sleep(0.2)
    assert await cut_connections(name) == 1
    await h.wait_for(sid, "ready", timeout_s=20)
    await asyncio.sleep(3.0)  # both workers have acted on the session by now
    await wait_connected(name, timeout_s=15)
    alive(h)
    assert h.max_overlapping_conversations(sid) <= 1, h.created_conversations(sid)
    assert h.statuses(sid).count("ready") == 1, h.statuses(sid)
    await h.stop_session(sid)
    await h.wait_terminal(sid)
    await asyncio.sleep(2.0)
    assert len(h.terminal(sid)) == 1, h.statuses(sid)
    assert h.active_conversations() == []


@pytest.mark.slow
@NEEDS_RABBITMQCTL
async def test_reaper_does_not_end_a_session_whose_worker_is_only_reconnecting(
    h: ReliabilityHarness,
) -> None:
    """A live session outlives its worker's connection cut even while another worker's reaper
    sweeps: it is not ended as worker_lost and ends once, when stopped."""
    name = h.connection_name()
    await h.start_named_worker(name, reconnect_interval_s=2.0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    await asyncio.sleep(0.3)  # the ack is at the broker: the session is past intake
    await h.start_worker(worker_reaper_interval_s=0.2)
    assert await cut_connections(name) == 1
    await wait_connected(name, timeout_s=15)
    await asyncio.sleep(2.0)
    alive(h)
    assert h.statuses(sid) == ["accepted", "ready"], h.statuses(sid)
    assert h.sim.conversations[ready["conversation_id"]].status == "active"
    await h.stop_session(sid)
    ended = await h.wait_terminal(sid)
    await asyncio.sleep(1.0)
    assert ended["reason"] == "stopped" and len(h.terminal(sid)) == 1, h.statuses(sid)


async def reconnected(app: WorkerApp, timeout_s: float = 15.0) -> None:
    """Wait until the worker's robust connection is up again (and not in a reconnect loop)."""
    connection = app.broker.connection
    assert connection is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if connection.connected.is_set() and not connection.reconnecting:
            await asyncio.sleep(1.2)  # channels reopen after the connection
            if connection.connected.is_set() and not connection.reconnecting:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker {app.settings.worker_id} did not reconnect within {timeout_s} s")


@pytest.mark.slow
async def test_outage_of_a_few_seconds_does_not_let_a_reaper_end_a_live_session(
    h: ReliabilityHarness,
) -> None:
    """A worker that cannot reach the broker for 3 s (others can) keeps its live session: another
    worker's reaper does not end it as worker_lost, and it ends once, when stopped."""
    proxy = await h.proxy()
    app = await h.start_proxied_worker(proxy)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    await asyncio.sleep(0.3)  # the ack is at the broker: the session is past intake
    await h.start_worker(worker_reaper_interval_s=0.2)
    proxy.cut(down_s=3.0)
    await asyncio.sleep(3.0)
    await reconnected(app)
    alive(h)
    assert h.statuses(sid) == ["accepted", "ready"], h.statuses(sid)
    assert h.sim.conversations[ready["conversation_id"]].status == "active"
    await h.stop_session(sid)
    ended = await h.wait_terminal(sid)
    await asyncio.sleep(1.0)
    assert ended["reason"] == "stopped" and len(h.terminal(sid)) == 1, h.statuses(sid)


@pytest.mark.slow
async def test_outage_while_provisioning_with_a_second_worker_starts_the_session_once(
    h: ReliabilityHarness,
) -> None:
    """A worker that loses the broker for 3 s mid-provisioning: the requeued job goes to another
    worker, yet the session never has two live conversations or two outcomes, and the first
    worker reconnects afterwards."""
    proxy = await h.proxy()
    app = await h.start_proxied_worker(proxy)
    h.sim.faults.latency("POST /v2/conversations", 1.0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "accepted")
    await h.start_worker()  # idle: it takes the job the broker requeues
    proxy.cut(down_s=3.0)
    await h.wait_for(sid, "ready", timeout_s=20)
    await asyncio.sleep(3.0)
    await reconnected(app)
    await asyncio.sleep(2.0)  # both workers have acted on the session by now
    alive(h)
    assert h.max_overlapping_conversations(sid) <= 1, h.created_conversations(sid)
    assert h.statuses(sid).count("ready") == 1, h.statuses(sid)
    await h.stop_session(sid)
    await h.wait_terminal(sid)
    await asyncio.sleep(2.0)
    assert len(h.terminal(sid)) == 1, h.statuses(sid)
    assert h.active_conversations() == []


@pytest.mark.slow
async def test_outage_while_a_burst_of_jobs_is_being_taken_fails_none_of_them(
    h: ReliabilityHarness,
) -> None:
    """A 2 s outage of the worker's broker link while it is taking a burst of 30 jobs: no job
    fails with internal_error; each one becomes ready once and ends once when stopped."""
    proxy = await h.proxy()
    app = await h.start_proxied_worker(proxy, worker_max_sessions=30)
    bodies = [job() for _ in range(30)]
    sids = [b["session_id"] for b in bodies]

    async def publish_all() -> None:
        for body in bodies:
            await h.publish(body)

    publishing = asyncio.create_task(publish_all())
    await h.wait_for(sids[0], "accepted")
    await asyncio.sleep(0.1)  # jobs are arriving and being claimed
    proxy.cut(down_s=2.0)
    await publishing
    await asyncio.sleep(2.0)
    await reconnected(app)
    await poll_until(lambda: all(h.terminal(s) or "ready" in h.statuses(s) for s in sids), 30)
    crashed = {
        sid: [(e["status"], e.get("error", {}).get("code")) for e in h.terminal(sid)]
        for sid in sids
        if h.terminal(sid)
    }
    assert crashed == {}, crashed  # e.g. {'s-…': [('failed', 'internal_error')]}
    await stop_all(h, sids)
    await asyncio.sleep(1.0)
    wrong = {sid: h.statuses(sid) for sid in sids if len(h.terminal(sid)) != 1}
    assert wrong == {}, wrong
    assert h.active_conversations() == []


@pytest.mark.slow
async def test_reaper_still_sweeps_after_its_worker_had_an_outage(h: ReliabilityHarness) -> None:
    """A worker whose broker link was down for 2 s (mid-sweep) keeps reaping afterwards: a live
    session orphaned later by a SIGKILLed worker process is adopted by it, and ends once, when
    stopped."""
    victim = await h.spawn_worker_process()
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    proxy = await h.proxy()
    app = await h.start_proxied_worker(
        proxy, worker_reaper_interval_s=0.2, worker_reaper_grace_s=0.5, worker_session_lease_s=2.0
    )
    for _ in range(3):  # several cuts, to land in the middle of a sweep
        proxy.cut(down_s=2.0)
        await asyncio.sleep(2.0)
        await reconnected(app)
    await asyncio.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    sessions = app.sessions
    assert sessions is not None
    assert await poll_until(lambda: sessions.is_live(sid), 15), h.statuses(sid)
    assert h.sim.conversations[ready["conversation_id"]].status == "active"  # the call goes on
    await h.stop_session(sid)
    ended = await h.wait_terminal(sid, timeout_s=15)
    assert ended["reason"] == "stopped" and ended["adopted_from"] == ready["worker_id"]
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"


@pytest.mark.slow
async def test_job_whose_start_fails_transiently_across_an_outage_is_retried_not_lost(
    h: ReliabilityHarness,
) -> None:
    """A job mid-provisioning when its worker's broker link drops for 1 s, whose create then fails
    with 503s: the redelivered copy is not lost to the duplicate check, the job is retried, and
    the session becomes ready once and ends once."""
    proxy = await h.proxy()
    app = await h.start_proxied_worker(proxy)
    h.sim.faults.latency("POST /v2/conversations", 1.5)
    h.sim.faults.fail_next("POST /v2/conversations", n=2, status=503)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "accepted")
    await asyncio.sleep(0.2)
    proxy.cut(down_s=1.0)
    await asyncio.sleep(1.0)
    await reconnected(app)
    ready = await h.wait_for(sid, "ready", timeout_s=30)
    assert h.statuses(sid).count("ready") == 1, h.statuses(sid)
    assert ready["conversation_id"] in h.created_conversations(sid)
    h.sim.faults.latency("POST /v2/conversations", 0)
    await stop_all(h, [sid])
    await asyncio.sleep(1.0)
    assert len(h.terminal(sid)) == 1 and h.terminal(sid)[0]["reason"] == "stopped", h.statuses(sid)
    assert h.active_conversations() == []


async def test_consumer_cancelled_by_the_server_is_restored(h: ReliabilityHarness) -> None:
    """When the broker cancels the worker's job consumer (here: the job queue is deleted under
    it), the worker redeclares the queue, consumes again, and later jobs still start."""
    await h.start_worker()
    first = job()
    await h.publish(first)
    await h.wait_for(first["session_id"], "ready")
    assert h.connection is not None
    channel = await h.connection.channel()
    await channel.queue_delete(h.topo.jobs_queue)  # basic.cancel to every consumer of it
    await channel.close()
    await asyncio.sleep(1.5)  # nobody redeclares it but the worker's own recovery
    second = job()
    await h.publish(second)
    await h.wait_for(second["session_id"], "ready", timeout_s=20)
    alive(h)
    await stop_all(h, [first["session_id"], second["session_id"]])
    assert h.active_conversations() == []


async def test_unreachable_broker_at_start_up_exits_with_one_clear_message(
    h: ReliabilityHarness,
) -> None:
    """A worker that cannot reach RabbitMQ at start-up exits non-zero within seconds, saying which
    broker (password hidden) in a short message, without a traceback."""
    password = "amqp-pass-0f9e8d7c"
    env = h.env(amqp_url=f"amqp://worker:{password}@127.0.0.1:1/")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = (out + err).decode(errors="replace")
    assert proc.returncode not in (0, None)
    assert password not in text
    assert "127.0.0.1:1" in text, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert len([line for line in text.splitlines() if line.strip()]) <= 5, text[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("RELIABILITY_BROKER_RESTART"),
    reason="restarts the shared RabbitMQ node (stop_app/start_app), which breaks any other suite "
    "running on it; set RELIABILITY_BROKER_RESTART=1 to run it",
)
async def test_broker_restart_keeps_live_sessions_and_queued_jobs(h: ReliabilityHarness) -> None:
    """`rabbitmqctl stop_app && start_app` with live sessions and queued (persistent, quorum)
    jobs: the worker reconnects, the sessions end once when stopped, and every job runs."""
    await h.start_named_worker(h.connection_name(), reconnect_interval_s=1.0, worker_max_sessions=2)
    live = [job() for _ in range(2)]
    queued = [job() for _ in range(2)]
    for body in live:
        await h.publish(body)
    for body in live:
        await h.wait_for(body["session_id"], "ready")
    for body in queued:
        await h.publish(body)
    await rabbitmqctl("stop_app")
    await asyncio.sleep(1.0)
    await rabbitmqctl("start_app")
    await rabbitmqctl("await_startup")
    await asyncio.sleep(4.0)  # reconnect interval + channel reopen pause
    alive(h)
    assert h.connection is not None
    await h.connection.ready()  # the harness's own robust connection is back too
    everyone = [b["session_id"] for b in (*live, *queued)]
    await stop_all(h, everyone[:2])
    for sid in everyone[2:]:
        await h.wait_for(sid, "ready", timeout_s=30)
    await stop_all(h, everyone[2:])
    for sid in everyone:
        assert h.statuses(sid) == ["accepted", "ready", "ended"], (sid, h.statuses(sid))
    assert h.active_conversations() == []
