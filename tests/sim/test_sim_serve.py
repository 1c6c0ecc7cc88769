"""The blocking entry point behind ``avatar-worker sim``: prints its URLs and default keys,
serves until cancelled."""

from __future__ import annotations

import asyncio
import socket

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
