"""pipecat_daily sessions end to end: a worker, its warm session processes (fake speech services,
a Daily-like transport), the simulator's Daily rooms and tokens and Tavus conversations."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from tavus.sim import decode_hs256
from tests.reliability.env import poll_until
from tests.worker.harness import DAILY_KEY, Harness, job
from worker.app import WorkerApp

pytestmark = pytest.mark.broker

HOOKS = "tests.worker.session_hooks"


def pipecat_settings(hook: str = "sim_avatar", **overrides: Any) -> dict[str, Any]:
    return {
        "daily_api_key": SecretStr(DAILY_KEY),
        "deepgram_api_key": SecretStr("fake-deepgram-key"),
        "openai_api_key": SecretStr("fake-openai-key"),
        "cartesia_api_key": SecretStr("fake-cartesia-key"),
        "worker_pipeline_hook": f"{HOOKS}:{hook}",
        "worker_warm_processes": 2,
        # Room for two at once whatever the host, and no load gate: these tests are not about
        # capacity (tests/worker/test_capacity_intake.py is), and CI hosts are busy.
        "worker_max_pipecat_sessions": 2,
        "worker_load_gate": "off",
        "pipeline_setup_timeout_s": 10.0,
        "pipeline_avatar_timeout_s": 10.0,
        **overrides,
    }


async def start(h: Harness, hook: str = "sim_avatar", **overrides: Any) -> WorkerApp:
    app = await h.start_worker(**pipecat_settings(hook, **overrides))
    assert app.pool is not None
    assert await app.pool.wait_warm(timeout_s=60), "session processes did not warm up"
    return app


def session_pid(app: WorkerApp, session_id: str) -> int:
    assert app.sessions is not None
    [state] = [s for s in app.sessions.sessions() if s.job.session_id == session_id]
    return int(state.live.pid)  # type: ignore[union-attr]


async def test_session_gets_a_private_room_tokens_and_a_named_conversation(h: Harness) -> None:
    """ready carries our room, a user token and the Tavus conversation; stop releases all three."""
    await start(h)
    body = job(user_name="Ada", max_duration_s=600)
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready", timeout_s=30)
    assert ready["mode"] == "pipecat_daily" and ready["fallback_reason"] is None
    [room] = [r for r in h.sim.rooms.values() if r.name == f"aw-{sid}"]
    assert ready["room_url"].endswith(f"/aw-{sid}") and room.privacy == "private"
    assert room.properties["eject_at_room_exp"] is True
    assert room.exp_s is not None and room.exp_s > room.created_at_s + 600
    claims = decode_hs256(ready["user_token"], DAILY_KEY)
    assert (claims["r"], claims["u"], claims.get("o", False)) == (f"aw-{sid}", "Ada", False)
    [owner] = [
        c.json
        for c in h.sim.calls_to("POST /v1/meeting-tokens")
        if c.json is not None and c.json["properties"]["is_owner"]
    ]
    assert owner["properties"]["room_name"] == f"aw-{sid}"
    conversation = h.sim.conversations[ready["conversation_id"]]
    assert conversation.request["conversation_name"] == f"aw-{sid}"
    assert conversation.request["persona_id"] == "pipecat0"
    assert conversation.request["properties"]["max_call_duration"] == 600
    await h.stop_session(sid)
    ended = await h.wait_for(sid, "ended", timeout_s=30)
    assert ended["reason"] == "stopped"
    assert conversation.status == "ended"
    assert f"aw-{sid}" in [c.path.rsplit("/", 1)[-1] for c in h.sim.calls_to("DELETE /v1/rooms/*")]


async def test_killed_session_process_fails_its_session_only(h: Harness) -> None:
    """SIGKILL one session's process: that session fails and is cleaned up; another carries on."""
    app = await start(h)
    doomed, survivor = job(), job()
    await h.publish(doomed)
    await h.publish(survivor)
    ready = await h.wait_for(doomed["session_id"], "ready", timeout_s=30)
    await h.wait_for(survivor["session_id"], "ready", timeout_s=30)
    os.kill(session_pid(app, doomed["session_id"]), signal.SIGKILL)
    failed = await h.wait_for(doomed["session_id"], "failed", timeout_s=30)
    assert failed["error"]["code"] == "worker_process_crashed"
    assert h.sim.conversations[ready["conversation_id"]].status == "ended"
    deleted = [c.path for c in h.sim.calls_to("DELETE /v1/rooms/*")]
    assert any(p.endswith(f"aw-{doomed['session_id']}") for p in deleted)
    await asyncio.sleep(0.5)
    assert h.statuses(survivor["session_id"]) == ["accepted", "ready"]
    await h.stop_session(survivor["session_id"])
    assert (await h.wait_for(survivor["session_id"], "ended", timeout_s=30))["reason"] == "stopped"


async def test_daily_join_failure_fails_instead_of_a_silent_ready(h: Harness) -> None:
    """A pipecat_daily job whose bot cannot join the room is retried, then fails
    daily_join_failed, never ready, and every attempt's room is deleted (in `auto` it would fall
    back to phoenix_rest: tests/worker/test_daily_breaker.py)."""
    await start(h, hook="join_fails")
    body = job(mode="pipecat_daily")
    sid = body["session_id"]
    await h.publish(body)
    failed = await h.wait_for(sid, "failed", timeout_s=90)
    assert failed["error"]["code"] == "daily_join_failed"
    assert "gave up after 3 attempts" in failed["error"]["message"]
    assert "ready" not in h.statuses(sid) and h.statuses(sid).count("retrying") == 2
    deletes = [c for c in h.sim.calls_to("DELETE /v1/rooms/*") if c.path.endswith(f"aw-{sid}")]
    assert len(deletes) >= 3


async def test_daily_outage_in_auto_falls_back_to_phoenix_rest(h: Harness) -> None:
    """When Daily keeps failing, an `auto` session runs as phoenix_rest and says why."""
    await start(h)
    h.sim.faults.fail_next("POST /v1/rooms", n=20, status=503)
    body = job(mode="auto")
    sid = body["session_id"]
    await h.publish(body)
    ready = await h.wait_for(sid, "ready", timeout_s=30)
    assert ready["mode"] == "phoenix_rest"
    assert "Daily is unavailable" in ready["fallback_reason"]
    assert ready["conversation_url"]


def session_processes() -> int:
    """This process's live session processes (the pool's children)."""
    count = 0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):  # it exited meanwhile (or is a zombie)
            count += "worker.pool.child" in " ".join(child.cmdline())
    return count


async def test_a_stop_while_provisioning_leaves_no_session_process_behind(h: Harness) -> None:
    """A session stopped while its Daily room is still being created ends `stopped`, and the
    session process it had taken is given up: no process stays busy until the worker stops."""
    app = await start(h)
    assert app.pool is not None
    h.sim.faults.latency("POST /v1/rooms", 3.0)  # the stop lands mid-provisioning
    body = job(mode="pipecat_daily")
    sid = body["session_id"]
    await h.publish(body)
    pool = app.pool
    # Its process is taken at once; its room is not made for 3 s.
    assert await poll_until(lambda: pool.busy_count == 1, 15), "no session process taken"
    await h.stop_session(sid)
    assert (await h.wait_for(sid, "ended", timeout_s=30))["reason"] == "stopped"
    assert await poll_until(
        lambda: pool.busy_count == 0 and session_processes() <= pool.size, 15
    ), f"{pool.busy_count} session process(es) still busy, {session_processes()} running"


def test_without_daily_python_the_worker_imports_and_auto_says_why() -> None:
    """With daily-python unimportable, the worker imports and `auto` resolves to phoenix_rest."""
    script = textwrap.dedent("""
        import importlib.abc, sys
        class NoDaily(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "daily" or name.startswith("daily."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
        sys.meta_path.insert(0, NoDaily())
        from pydantic import SecretStr
        from worker.app import pipecat_daily_unavailable_reason
        from worker.modes import ModeResolver
        from worker.settings import Settings
        keys = {name: SecretStr("k") for name in (
            "daily_api_key", "deepgram_api_key", "openai_api_key", "cartesia_api_key")}
        reason = pipecat_daily_unavailable_reason(Settings(_env_file=None, **keys))
        resolution = ModeResolver({"phoenix_rest": object()}, default_mode="auto",
                                  unavailable={"pipecat_daily": reason}).resolve("auto")
        print(resolution.mode, "|", resolution.fallback_reason)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    mode, reason = result.stdout.strip().split(" | ")
    assert mode == "phoenix_rest"
    assert "daily-python" in reason and "WSL" in reason
