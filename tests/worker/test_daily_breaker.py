"""The Daily circuit breaker end to end: a pipecat_daily-capable worker, the simulator's Daily
failing (REST 503s, or the bot unable to join), and what the users and the operator see."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.worker.harness import Harness, job
from tests.worker.test_pipecat_daily import start
from worker.app import WorkerApp

pytestmark = pytest.mark.broker

NEVER_S = 600.0  # a cool-down no test outlives: the breaker stays open until the test ends


def daily_calls_for(h: Harness, session_id: str) -> int:
    """Calls the simulator's Daily saw for a session's room (creates, tokens, deletes)."""
    room = f"aw-{session_id}"
    return sum(
        1
        for c in h.sim.calls
        if c.provider == "daily" and (room in c.path or room in json.dumps(c.json or {}))
    )


async def status_of(app: WorkerApp) -> dict[str, Any]:
    assert app.status is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{app.status.port}/status") as response,
    ):
        document: dict[str, Any] = await response.json()
        return document


async def metrics_of(app: WorkerApp) -> str:
    assert app.status is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{app.status.port}/metrics") as response,
    ):
        return await response.text()


async def test_a_burst_during_a_daily_outage_runs_as_phoenix_rest_after_the_first_failures(
    h: Harness,
) -> None:
    """During a Daily outage only the first jobs of a burst try Daily; once two have failed the
    breaker opens and the rest of the `auto` jobs go straight to phoenix_rest, saying why."""
    app = await start(
        h,
        worker_max_sessions=2,
        worker_daily_breaker_threshold=2,
        worker_daily_breaker_cooldown_s=NEVER_S,
    )
    h.sim.faults.fail_next("POST /v1/rooms", n=1000, status=503)
    burst = [job(mode="auto") for _ in range(8)]
    for body in burst:
        await h.publish(body)
    readies = []
    for body in burst:  # two slots: users leave once their session is ready
        readies.append(await h.wait_for(body["session_id"], "ready", timeout_s=60))
        await h.stop_session(body["session_id"])
    assert all(r["mode"] == "phoenix_rest" and r["conversation_url"] for r in readies)
    tried_daily = [b["session_id"] for b in burst if daily_calls_for(h, b["session_id"]) > 0]
    # The jobs taken before the second failure was counted: the first two, and a third when a
    # slot freed before the second one's Daily retries ran out.
    assert tried_daily == [b["session_id"] for b in burst[: len(tried_daily)]]
    assert 2 <= len(tried_daily) <= 3, tried_daily
    for body, ready in zip(burst, readies, strict=True):
        if body["session_id"] in tried_daily:
            assert "Daily is unavailable" in ready["fallback_reason"]
            assert h.statuses(body["session_id"])[:2] == ["accepted", "ready"]  # no retrying
        else:
            assert "Daily's circuit breaker is open" in ready["fallback_reason"]
            assert "Daily failures in a row" in ready["fallback_reason"]
    breaker = (await status_of(app))["daily_breaker"]
    assert breaker["state"] == "open" and breaker["opened_total"] == 1  # one cool-down, no probe
    assert 'avatar_worker_daily_breaker_state{state="open"} 1.0' in await metrics_of(app)


async def test_explicit_pipecat_daily_fails_fast_while_a_join_failure_holds_the_breaker_open(
    h: Harness,
) -> None:
    """A bot that cannot join makes an `auto` job fall back and opens the breaker; a job that
    asks for pipecat_daily then fails at once with the breaker's reason, never moved or tried."""
    await start(
        h,
        hook="join_fails",
        worker_daily_breaker_threshold=1,
        worker_daily_breaker_cooldown_s=NEVER_S,
    )
    tripping = job(mode="auto")
    await h.publish(tripping)
    ready = await h.wait_for(tripping["session_id"], "ready", timeout_s=60)
    assert ready["mode"] == "phoenix_rest"
    assert "Daily is unavailable" in ready["fallback_reason"]
    assert "join" in ready["fallback_reason"]
    assert "retrying" not in h.statuses(tripping["session_id"])
    explicit = job(mode="pipecat_daily")
    sid = explicit["session_id"]
    await h.publish(explicit)
    failed = await h.wait_for(sid, "failed", timeout_s=30)
    assert h.statuses(sid) == ["failed"]  # refused before anything started
    assert failed["mode"] != "phoenix_rest"
    error = failed["error"]
    assert error["code"] == "daily_unavailable" and error["retryable"] is False
    assert "Daily's circuit breaker is open" in error["message"]
    assert "send the job again" in error["message"] and "mode auto" in error["message"]
    assert daily_calls_for(h, sid) == 0


async def test_the_breaker_closes_when_a_probe_finds_daily_answering_again(h: Harness) -> None:
    """After the cool-down one `auto` job tries Daily again; Daily answers, so it runs as
    pipecat_daily and the jobs after it do too."""
    app = await start(h, worker_daily_breaker_threshold=1, worker_daily_breaker_cooldown_s=1.0)
    h.sim.faults.fail_next("POST /v1/rooms", n=2, status=503)  # one job's attempts: then it's up
    first = job(mode="auto")
    await h.publish(first)
    assert (await h.wait_for(first["session_id"], "ready", timeout_s=60))["mode"] == "phoenix_rest"
    assert (await status_of(app))["daily_breaker"]["state"] == "open"
    for _ in range(200):  # until the cool-down is over
        if (await status_of(app))["daily_breaker"]["state"] != "open":
            break
        await asyncio.sleep(0.05)
    probe, after = job(mode="auto"), job(mode="auto")
    await h.publish(probe)
    ready = await h.wait_for(probe["session_id"], "ready", timeout_s=60)
    assert ready["mode"] == "pipecat_daily" and ready["fallback_reason"] is None
    await h.publish(after)
    ready = await h.wait_for(after["session_id"], "ready", timeout_s=60)
    assert ready["mode"] == "pipecat_daily"
    breaker = (await status_of(app))["daily_breaker"]
    assert (breaker["state"], breaker["consecutive_failures"]) == ("closed", 0)
    metrics = await metrics_of(app)
    for change in ("open", "half_open", "closed"):
        assert f'avatar_worker_daily_breaker_transitions_total{{to="{change}"}} 1.0' in metrics
    for body in (first, probe, after):
        await h.stop_session(body["session_id"])
        await h.wait_for(body["session_id"], "ended", timeout_s=30)
