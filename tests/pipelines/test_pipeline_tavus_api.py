"""Pipecat's TavusApi, pointed at the project's Tavus simulator through point_tavus_at."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from pipecat.transports.tavus.transport import TavusApi

from pipelines.avatar import AvatarConnection, conversation_middleware, point_tavus_at
from pipelines.config import TavusConversationOptions
from tavus.sim import DEFAULT_REPLICA_ID

TAVUS_KEY = "test-tavus-key-0123456789"
OPTIONS = TavusConversationOptions(
    conversation_name="avatar session s-1",
    max_call_duration_s=1860,
    participant_left_timeout_s=10,
    participant_absent_timeout_s=120,
)


@pytest.fixture
def tavus_base_url_restored() -> Iterator[None]:
    """Point TavusApi back at the real Tavus after the test (the setting is process-wide)."""
    yield
    point_tavus_at("https://tavusapi.com/v2")


def _calls(sim: Any, method: str, path_suffix: str) -> list[Any]:
    return [c for c in sim.calls if c.method == method and c.path.endswith(path_suffix)]


async def test_create_and_end_reach_the_simulator(sim: Any, tavus_base_url_restored: None) -> None:
    """TavusApi creates with our name and timers and ends the conversation, both recorded."""
    point_tavus_at(sim.tavus_base_url + "/")
    connection = AvatarConnection()
    middleware = conversation_middleware(connection, sim.tavus_base_url, OPTIONS)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as http:
        api = TavusApi(TAVUS_KEY, http)
        created = await api.create_conversation(DEFAULT_REPLICA_ID, "pipecat0")
        await api.end_conversation(created["conversation_id"])

    [create] = _calls(sim, "POST", "/v2/conversations")
    assert create.status == 200
    assert create.json == {
        "replica_id": DEFAULT_REPLICA_ID,
        "persona_id": "pipecat0",
        "conversation_name": "avatar session s-1",
        "properties": {
            "max_call_duration": 1860,
            "participant_left_timeout": 10,
            "participant_absent_timeout": 120,
        },
    }
    conversation_id = created["conversation_id"]
    [end] = _calls(sim, "POST", f"/v2/conversations/{conversation_id}/end")
    assert end.status == 200
    assert connection.conversation_id == conversation_id
    assert connection.conversation_url == created["conversation_url"]
    assert connection.ended_conversation_ids == [conversation_id]


async def test_rejected_key_is_recorded_with_a_reason(
    sim: Any, tavus_base_url_restored: None
) -> None:
    """A 401 from Tavus, which Pipecat only logs, leaves a reason naming TAVUS_API_KEY."""
    point_tavus_at(sim.tavus_base_url)
    connection = AvatarConnection()
    middleware = conversation_middleware(connection, sim.tavus_base_url, OPTIONS)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as http:
        with pytest.raises(aiohttp.ClientResponseError):
            await TavusApi("wrong-key", http).create_conversation(DEFAULT_REPLICA_ID, "pipecat0")

    assert connection.conversation_id is None
    assert connection.failure_reason == "TAVUS_API_KEY was rejected by Tavus (401)"
    assert connection.failure_retryable is False


async def test_server_error_is_retryable(sim: Any, tavus_base_url_restored: None) -> None:
    """A 503 on create is recorded as a retryable failure."""
    point_tavus_at(sim.tavus_base_url)
    sim.faults.fail_next("POST /v2/conversations", n=1, status=503)
    connection = AvatarConnection()
    middleware = conversation_middleware(connection, sim.tavus_base_url, TavusConversationOptions())
    async with aiohttp.ClientSession(middlewares=(middleware,)) as http:
        with pytest.raises(aiohttp.ClientResponseError):
            await TavusApi(TAVUS_KEY, http).create_conversation(DEFAULT_REPLICA_ID, "pipecat0")

    assert connection.failure_retryable is True
    assert "503" in (connection.failure_reason or "")
    [create] = _calls(sim, "POST", "/v2/conversations")
    assert create.json == {"replica_id": DEFAULT_REPLICA_ID, "persona_id": "pipecat0"}
