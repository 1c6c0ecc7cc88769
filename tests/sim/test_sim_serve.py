"""The blocking entry point behind ``avatar-worker sim``: prints its URLs and default keys,
serves until cancelled; the command stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from tavus.sim import serve


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_prints_urls_uses_default_keys_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """serve() announces both base URLs and its default keys, answers them, and stops on cancel."""
    port = free_port()
    task = asyncio.create_task(serve("127.0.0.1", port, daily_rate_limits=False))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(100):
            try:
                response = await client.get("/v2/replicas", headers={"x-api-key": "sim-tavus-key"})
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.02)
        assert response.status_code == 200
        rooms = await client.get("/v1/rooms", headers={"Authorization": "Bearer sim-daily-key"})
        assert rooms.json() == {"total_count": 0, "data": []}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    printed = capsys.readouterr().out
    assert f"{base}/v2" in printed and f"{base}/v1" in printed
    assert "sim-tavus-key" in printed and "sim-daily-key" in printed


async def test_public_base_url_sets_the_conversation_url_host() -> None:
    """With public_base_url (e.g. a compose service name), conversation_url uses that host."""
    port = free_port()
    task = asyncio.create_task(
        serve("127.0.0.1", port, tavus_api_keys={"k"}, public_base_url="http://sim:8080")
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v2") as client:
        for _ in range(100):
            try:
                response = await client.post(
                    "/conversations",
                    json={"replica_id": "r90bbd427f71"},
                    headers={"x-api-key": "k"},
                )
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    body = response.json()
    assert body["conversation_url"] == f"http://sim:8080/rooms/{body['conversation_id']}"


async def test_one_simulator_can_run_twice_and_keeps_its_state() -> None:
    """A Simulator restarted on a new port keeps its conversations and still sends webhooks."""
    from tavus.sim import ANNA_REPLICA_ID, Simulator

    simulator = Simulator(tavus_api_keys={"k"})
    headers = {"x-api-key": "k"}
    for run in range(2):
        async with simulator.running() as sim, httpx.AsyncClient(headers=headers) as client:
            body = {
                "replica_id": ANNA_REPLICA_ID,
                "callback_url": f"{sim.base_url}/_sim/webhook-sink",
            }
            created = await client.post(f"{sim.tavus_base_url}/conversations", json=body)
            conversation_id = created.json()["conversation_id"]
            await client.post(f"{sim.tavus_base_url}/conversations/{conversation_id}/end")
            await sim.drain_webhooks()
            listed = await client.get(f"{sim.tavus_base_url}/conversations")
            assert listed.json()["total_count"] == run + 1
    assert [d.status for d in simulator.webhook_deliveries] == [200] * 4


async def test_unknown_paths_answer_in_each_providers_error_shape(sim_on_port: str) -> None:
    """Unknown /v2 paths get a Tavus-style message, unknown /v1 paths a Daily-style not-found."""
    async with httpx.AsyncClient(base_url=sim_on_port) as client:
        tavus = await client.get("/v2/nothing", headers={"x-api-key": "sim-tavus-key"})
        daily = await client.get("/v1/nothing", headers={"Authorization": "Bearer sim-daily-key"})
        room = await client.get("/rooms/c000000000000")
    assert tavus.status_code == 404 and "message" in tavus.json()
    assert daily.status_code == 404 and daily.json()["error"] == "not-found"
    assert room.status_code == 404


@pytest.fixture
async def sim_on_port() -> AsyncIterator[str]:
    from tavus.sim import Simulator

    async with Simulator().running() as sim:
        yield sim.base_url


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_sim_command_exits_0_at_once_on_sigterm_and_sigint(sig: signal.Signals) -> None:
    """`avatar-worker sim` stops within seconds on SIGTERM or SIGINT with exit code 0 and no
    traceback, as `avatar-worker run` does (and as a PID 1 in a container, which has no default
    action for SIGTERM, must)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        "sim",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(30):
            while not (line := await proc.stdout.readline()).startswith(b"Control:"):
                assert line, "the simulator exited before it served"
        proc.send_signal(sig)
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b"Traceback" not in err
