"""Crashes of real worker processes under load: SIGKILL one worker while it provisions and another
while its sessions are live; every job still gets exactly one terminal event, no session has two
live conversations at once, and nothing the run created is left active (the surviving workers'
reapers finish what the dead ones left).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.env import ReliabilityHarness, poll_until
from tests.worker.harness import job
from worker.app import WorkerApp

pytestmark = pytest.mark.broker

WORKER = {
    "worker_max_sessions": 10,
    "worker_reaper_interval_s": 0.3,
    "worker_reaper_grace_s": 1.0,
    "worker_session_lease_s": 2.0,  # a dead worker's session record lapses after this
    "worker_poll_interval_s": 0.2,
}


def last_event(h: ReliabilityHarness, sid: str) -> dict[str, Any] | None:
    events = h.of(sid)
    return events[-1] if events else None


def owner_of(h: ReliabilityHarness, status: str, sids: list[str]) -> str | None:
    """The worker id of some session whose latest event has this status."""
    for sid in sids:
        event = last_event(h, sid)
        if event is not None and event["status"] == status:
            return str(event["worker_id"])
    return None


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    if not await poll_until(predicate, timeout_s):
        raise AssertionError(f"{what} within {timeout_s} s")


async def stop_every_ready_session(
    h: ReliabilityHarness, sids: list[str], done: asyncio.Event
) -> None:
    """Stop each session once it is ready; send the stop again every 2 s until it has ended (a stop
    sent to a worker that was killed meanwhile is lost with it)."""
    sent: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while not done.is_set():
        for sid in sids:
            if h.terminal(sid) or "ready" not in h.statuses(sid):
                continue
            if loop.time() - sent.get(sid, -10.0) >= 2.0:
                sent[sid] = loop.time()
                await h.stop_session(sid)
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_killing_workers_mid_provisioning_and_mid_session_loses_no_outcome(
    h: ReliabilityHarness,
) -> None:
    """Three worker processes and 24 jobs; one worker is SIGKILLed while provisioning and another
    while its sessions are live: each job ends with exactly one of ended/failed/expired, no session
    has two live conversations at once, and no conversation is left active."""
    for _ in range(3):
        await h.spawn_capturing(**WORKER)
    ids = {f"{h.prefix}-w{i}": proc for i, proc in enumerate(h.processes)}  # worker id -> process
    h.sim.faults.latency("POST /v2/conversations", 0.8)
    bodies = [job() for _ in range(24)]
    sids = [b["session_id"] for b in bodies]
    for body in bodies[:12]:
        await h.publish(body)

    # 1. kill a worker while one of its sessions is provisioning (accepted, create in flight)
    await wait_until(lambda: owner_of(h, "accepted", sids) is not None, 20, "no session accepted")
    first = owner_of(h, "accepted", sids)
    assert first is not None
    ids[first].send_signal(signal.SIGKILL)
    await ids[first].wait()
    await h.spawn_capturing(**WORKER)  # a replacement, as an orchestrator would start
    ids = {f"{h.prefix}-w{i}": proc for i, proc in enumerate(h.processes)}
    for body in bodies[12:]:
        await h.publish(body)

    # 2. kill another worker while it has live sessions
    def live_elsewhere() -> str | None:
        for sid in sids:
            event = last_event(h, sid)
            if event and event["status"] == "ready" and event["worker_id"] != first:
                return str(event["worker_id"])
        return None

    await wait_until(lambda: live_elsewhere() is not None, 20, "no live session")
    second = live_elsewhere()
    assert second is not None and second in ids
    ids[second].send_signal(signal.SIGKILL)
    await ids[second].wait()
    h.sim.faults.latency("POST /v2/conversations", 0)

    # 3. stop every session once it is ready; the reapers finish the dead workers' sessions
    done = asyncio.Event()
    stopper = asyncio.create_task(stop_every_ready_session(h, sids, done))
    try:
        await wait_until(
            lambda: all(h.terminal(sid) for sid in sids),
            60,
            f"jobs without a terminal event: {[s for s in sids if not h.terminal(s)]}",
        )
    finally:
        done.set()
        await stopper
    await asyncio.sleep(3.0)  # late duplicates would show up now; the reapers sweep again

    wrong = {sid: h.statuses(sid) for sid in sids if len(h.terminal(sid)) != 1}
    assert wrong == {}, wrong
    doubled = {
        sid: h.created_conversations(sid)
        for sid in sids
        if h.max_overlapping_conversations(sid) > 1
    }
    assert doubled == {}, doubled
    assert h.active_conversations() == []
    reasons = {e.get("reason") or e["status"] for sid in sids for e in h.terminal(sid)}
    # The second victim's live sessions are adopted, or resumed from their redelivered jobs when
    # it died before acking them; a session killed mid-provisioning can still end worker_lost
    # (seen on RabbitMQ 4). Calls cut short are counted by bench/soak.py.
    assert reasons <= {"stopped", "worker_lost", "provider_ended"}, reasons
    for pid, lines in h.stderr_lines.items():  # the survivors logged no crash
        if pid not in (ids[first].pid, ids[second].pid):
            assert not any("session.crashed" in line for line in lines)


@pytest.mark.slow
async def test_worker_killed_after_ending_the_conversation_but_before_ended_still_gives_an_outcome(
    h: ReliabilityHarness,
) -> None:
    """SIGKILL a worker while it ends a stopped session (Tavus ends the conversation, the worker
    dies before publishing `ended`): another worker still publishes the session's one outcome."""
    victim = await h.spawn_capturing(worker_reaper_interval_s=0)
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready")
    await asyncio.sleep(0.3)  # the job's ack is at the broker
    h.sim.faults.latency("POST /v2/conversations/*/end", 1.0)
    await h.stop_session(sid)
    await asyncio.sleep(0.5)  # the end call is in flight; Tavus will end the call regardless
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await asyncio.sleep(1.0)
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"
    assert h.statuses(sid) == ["accepted", "ready"]
    h.sim.faults.latency("POST /v2/conversations/*/end", 0)
    await h.start_worker(**WORKER)
    ended = await h.wait_terminal(sid, timeout_s=15)
    assert ended["status"] == "ended", h.statuses(sid)
    await asyncio.sleep(1.0)
    assert len(h.terminal(sid)) == 1, h.statuses(sid)


@pytest.mark.slow
async def test_worker_killed_just_after_a_session_ended_gets_no_second_outcome(
    h: ReliabilityHarness,
) -> None:
    """SIGKILL a worker the moment it published one session's `ended`: another worker adopts its
    two live sessions, which end once each when stopped, and publishes nothing more for the
    ended one."""
    victim = await h.spawn_capturing(**{**WORKER, "worker_reaper_interval_s": 0})
    bodies = [job() for _ in range(3)]
    for body in bodies:
        await h.publish(body)
    sids = [b["session_id"] for b in bodies]
    await wait_until(lambda: all("ready" in h.statuses(s) for s in sids), 20, "not all ready")
    await h.stop_session(sids[0])
    await wait_until(lambda: bool(h.terminal(sids[0])), 20, "not ended")
    victim.send_signal(signal.SIGKILL)  # at once: its bookkeeping after `ended` may not be done
    await victim.wait()
    rescuer = await h.start_worker(**WORKER)  # its reaper adopts the others' sessions
    sessions = rescuer.sessions
    assert sessions is not None
    await wait_until(lambda: all(sessions.is_live(s) for s in sids[1:]), 20, "not adopted")
    for sid in sids[1:]:
        await h.stop_session(sid)
    await wait_until(lambda: all(h.terminal(s) for s in sids), 20, "the live ones not ended")
    await asyncio.sleep(3 * float(WORKER["worker_session_lease_s"]))  # every lease has lapsed
    wrong = {sid: h.statuses(sid) for sid in sids if len(h.terminal(sid)) != 1}
    assert wrong == {}, wrong


@pytest.mark.slow
async def test_two_reapers_racing_for_a_dead_workers_sessions_give_each_one_outcome(
    h: ReliabilityHarness,
) -> None:
    """Two workers whose sweeps and lapsed leases fall due together (grace = lease = 1 s) finish
    the eight live sessions of a SIGKILLed worker process with exactly one `ended` each."""
    racing = {
        **WORKER,
        "worker_reaper_grace_s": 1.0,
        "worker_session_lease_s": 1.0,
        "worker_adopt_sessions": False,  # the reapers' worker_lost path is what races
    }
    victim = await h.spawn_capturing(**{**racing, "worker_reaper_interval_s": 0})
    bodies = [job() for _ in range(8)]
    for body in bodies:
        await h.publish(body)
    sids = [b["session_id"] for b in bodies]
    await wait_until(lambda: all("ready" in h.statuses(s) for s in sids), 20, "not all ready")
    await asyncio.sleep(0.5)  # the acks are at the broker
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await h.start_worker(**racing)
    await h.start_worker(**racing)
    await wait_until(lambda: all(h.terminal(s) for s in sids), 20, "sessions without an outcome")
    await asyncio.sleep(3.0)  # any second outcome would be out by now
    wrong = {sid: h.statuses(sid) for sid in sids if len(h.terminal(sid)) != 1}
    assert wrong == {}, wrong
    assert {e["reason"] for s in sids for e in h.terminal(s)} == {"worker_lost"}
    assert h.active_conversations() == []


def brief(event: dict[str, Any]) -> tuple[Any, ...]:
    return event["status"], event.get("reason"), event["worker_id"], event["at"]


async def wait_reaped(h: ReliabilityHarness, app: WorkerApp, sid: str) -> None:
    """Wait until `app`'s reaper has acted on the session (its second terminal event is out: a
    copy, or a different outcome) and finished it; its record is then marked finished."""
    reaper = app.reaper
    assert reaper is not None
    await wait_until(lambda: len(h.terminal(sid)) >= 2, 30, "the reaper did not publish")
    await wait_until(lambda: reaper.reaped_total >= 1, 30, "the reaper did not finish")
    record = await app.records.read(sid)
    assert record is not None and record.finished, record


@pytest.mark.slow
async def test_worker_killed_between_its_ended_and_finishing_its_record_gets_no_other_outcome(
    h: ReliabilityHarness,
) -> None:
    """F12: the worker process SIGKILLs itself the instant it would mark the session's record
    finished (its `ended` is confirmed by then: tests/reliability/dying_worker.py). A reaper may
    publish a copy of that very `ended` (same reason, `at`, worker_id, attempt, duration), never
    a different outcome such as ended(worker_lost)."""
    victim = await h.spawn_capturing(
        module="tests.reliability.dying_worker", **{**WORKER, "worker_reaper_interval_s": 0}
    )
    body = job(metadata={"k": "v"})
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready", timeout_s=20)
    await h.stop_session(sid)
    ended = await h.wait_terminal(sid)
    assert await victim.wait() == -signal.SIGKILL  # it died in the window, after `ended`
    assert ended["reason"] == "stopped"
    rescuer = await h.start_worker(**WORKER)  # its reaper gets the session's lapsed note
    await wait_reaped(h, rescuer, sid)
    different = [brief(e) for e in h.terminal(sid) if e != ended]
    assert different == [], (brief(ended), different)
    assert h.statuses(sid).count("accepted") == 1


@pytest.mark.slow
async def test_reaper_killed_between_its_worker_lost_and_finishing_the_record_gets_no_other(
    h: ReliabilityHarness,
) -> None:
    """The reaper's own F12 window: a worker process is SIGKILLed with a live session; the reaper
    that finishes it SIGKILLs itself the instant it would mark the record finished (its
    ended(worker_lost) is confirmed by then). The next reaper may publish a copy of that very
    event, never a second, different ended(worker_lost)."""
    victim = await h.spawn_capturing(**{**WORKER, "worker_reaper_interval_s": 0})
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready", timeout_s=20)
    await asyncio.sleep(0.5)  # the job's ack is at the broker: the session is past intake
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    no_adoption = {**WORKER, "worker_adopt_sessions": False}  # the worker_lost path
    dying = await h.spawn_capturing(  # lease path only: its sweep would race it for the session
        module="tests.reliability.dying_worker",
        **{**no_adoption, "worker_reaper_interval_s": 3600},
    )
    lost = await h.wait_terminal(sid, timeout_s=30)
    assert await dying.wait() == -signal.SIGKILL  # it died in the window, after worker_lost
    assert lost["reason"] == "worker_lost"
    rescuer = await h.start_worker(**no_adoption)
    await wait_reaped(h, rescuer, sid)
    different = [brief(e) for e in h.terminal(sid) if e != lost]
    assert different == [], (brief(lost), different)


@pytest.mark.slow
async def test_worker_killed_while_writing_its_outcome_note_still_gets_one_outcome(
    h: ReliabilityHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker SIGKILLs itself inside the write of its session's outcome note, right after
    that write's first broker operation (tests/reliability/dying_worker.py, window `outcome`),
    before `ended` is published. The session's note must survive that instant: a reaper then
    publishes exactly one outcome. (Replacing the note by purge-then-publish left the record
    queue empty there, and the session never got an outcome.)"""
    monkeypatch.setenv("DYING_WORKER_WINDOW", "outcome")
    victim = await h.spawn_capturing(
        module="tests.reliability.dying_worker", **{**WORKER, "worker_reaper_interval_s": 0}
    )
    body = job()
    sid = body["session_id"]
    await h.publish(body)
    await h.wait_for(sid, "ready", timeout_s=20)
    await h.stop_session(sid)
    assert await victim.wait() == -signal.SIGKILL
    assert h.terminal(sid) == []  # it died before publishing `ended`
    rescuer = await h.start_worker(**WORKER)
    outcome = await h.wait_terminal(sid, timeout_s=30)
    reaper = rescuer.reaper
    assert reaper is not None
    await wait_until(lambda: reaper.reaped_total >= 1, 30, "the reaper did not finish")
    await asyncio.sleep(3.0)  # later leases and sweeps find the record finished
    assert h.terminal(sid) == [outcome], h.statuses(sid)
    assert h.active_conversations() == []
