"""Retries: backoff grows with bounded full jitter, Retry-After wins, attempts are capped, and a
conversation is never created twice."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import bodies
import httpx
import pytest
from conftest import API_KEY, BASE_URL, RecordedSleep
from fake_tavus import FakeTavus
from structlog.testing import capture_logs

from tavus._http import RetryPolicy, parse_retry_after
from tavus.client import TavusClient
from tavus.errors import (
    ConcurrencyLimitError,
    RequestRejectedError,
    ServerError,
)
from tavus.models import CreateConversationRequest, CreatePersonaRequest

UNAVAILABLE = httpx.Response(503, json={"message": "Service Unavailable"})


def _client(fake: FakeTavus, retry: RetryPolicy, **kw: object) -> TavusClient:
    return TavusClient(
        api_key=API_KEY, base_url=BASE_URL, transport=fake.transport, retry=retry, **kw
    )  # type: ignore[arg-type]


async def test_backoff_doubles_and_is_capped(fake: FakeTavus, sleeps: RecordedSleep) -> None:
    """With jitter at its top, the delays are 1, 2, 3, 3 s for base 1 s and a 3 s cap."""
    fake.expect("GET", "/replicas", UNAVAILABLE, times=4)
    fake.reply("GET", "/replicas", 200, bodies.REPLICA_LIST)
    policy = RetryPolicy(
        attempts=5, base_delay_s=1.0, max_delay_s=3.0, sleep=sleeps, jitter=lambda: 1.0
    )
    async with _client(fake, policy) as client:
        page = await client.list_replicas()
    assert page.total_count == 42
    assert sleeps.delays_s == [1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    """Each delay is uniform in [0, min(max, base·2^(n-1))]: never negative, never over."""
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    error = ServerError("x", provider="tavus")
    for number in range(1, 8):
        ceiling = min(4.0, 0.5 * 2 ** (number - 1))
        delays = [policy.delay_s(number, error) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # really spread, not a constant


async def test_max_attempts_then_the_last_error(
    fake: FakeTavus, client: TavusClient, sleeps: RecordedSleep
) -> None:
    """After ``attempts`` tries the last error is raised; nothing more is sent."""
    fake.expect("POST", "/conversations/c1/end", UNAVAILABLE, times=3)
    with pytest.raises(ServerError):
        await client.end_conversation("c1")
    assert len(fake.seen) == 3
    assert sleeps.delays_s == [0.5, 1.0]


async def test_retry_after_seconds_is_honoured(
    fake: FakeTavus, client: TavusClient, sleeps: RecordedSleep
) -> None:
    """A 429's ``Retry-After: 4`` replaces the backoff delay."""
    fake.reply("GET", "/personas", 429, {"message": "slow"}, headers={"retry-after": "4"})
    fake.reply("GET", "/personas", 200, bodies.PERSONA_LIST)
    await client.list_personas()
    assert sleeps.delays_s == [4.0]


async def test_retry_after_is_capped(fake: FakeTavus, sleeps: RecordedSleep) -> None:
    """A huge Retry-After (an HTTP-date next year) waits at most ``max_retry_after_s``."""
    fake.reply(
        "GET",
        "/personas",
        503,
        {"message": "x"},
        headers={"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"},
    )
    fake.reply("GET", "/personas", 200, bodies.PERSONA_LIST)
    policy = RetryPolicy(attempts=2, max_retry_after_s=20.0, sleep=sleeps)
    async with _client(fake, policy) as client:
        await client.list_personas()
    assert sleeps.delays_s == [20.0]


def test_retry_after_parses_seconds_and_http_dates() -> None:
    """Retry-After is read as delta-seconds or an HTTP-date; garbage and past dates are safe."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


async def test_4xx_is_not_retried(
    fake: FakeTavus, client: TavusClient, sleeps: RecordedSleep
) -> None:
    """A rejected request (400) is raised at once, even on an idempotent call."""
    fake.reply("GET", "/personas/p1", 400, {"error": "bad"})
    with pytest.raises(RequestRejectedError):
        await client.get_persona("p1")
    assert sleeps.delays_s == []


async def test_create_conversation_not_retried_after_5xx_without_a_name(
    fake: FakeTavus, client: TavusClient
) -> None:
    """An unnamed create that got a 5xx may have created a conversation: it is not sent again."""
    fake.expect("POST", "/conversations", UNAVAILABLE)
    with pytest.raises(ServerError):
        await client.create_conversation(CreateConversationRequest(replica_id="r1"))
    assert len(fake.seen) == 1


async def test_named_create_retried_when_the_name_check_finds_nothing(
    fake: FakeTavus, client: TavusClient
) -> None:
    """After a 5xx, a lookup of active conversations by name finds none, so create is resent."""
    fake.expect("POST", "/conversations", UNAVAILABLE)
    fake.reply("GET", "/conversations", 200, {"data": [], "total_count": 0})
    fake.reply("POST", "/conversations", 200, bodies.CREATED_CONVERSATION)
    req = CreateConversationRequest(replica_id="r1", conversation_name="Improve Sales Technique")
    conversation = await client.create_conversation(req)
    assert conversation.conversation_id == "ca4301628cb9"
    assert fake.seen[1].url.params["status"] == "active"


async def test_named_create_returns_the_conversation_created_meanwhile(
    fake: FakeTavus, client: TavusClient
) -> None:
    """After a read timeout, a conversation found under the name is returned, not created again."""
    fake.expect("POST", "/conversations", httpx.ReadTimeout("timed out"))
    fake.reply("GET", "/conversations", 200, bodies.CONVERSATION_LIST | {"total_count": 1})
    req = CreateConversationRequest(replica_id="r1", conversation_name="A Meeting")
    with capture_logs() as logs:
        conversation = await client.create_conversation(req)
    assert conversation.conversation_id == "ca4301628cb9"
    assert [r.method for r in fake.seen] == ["POST", "GET"]
    assert logs[-1] == {
        "event": "tavus.conversation_recovered",
        "log_level": "info",
        "conversation_id": "ca4301628cb9",
        "conversation_name": "A Meeting",
    }


async def test_create_retried_after_connect_error_without_lookup(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A connect error means nothing reached Tavus: create is resent without a name lookup."""
    fake.expect("POST", "/conversations", httpx.ConnectError("refused"))
    fake.reply("POST", "/conversations", 200, bodies.CREATED_CONVERSATION)
    req = CreateConversationRequest(replica_id="r1", conversation_name="x")
    await client.create_conversation(req)
    assert [r.method for r in fake.seen] == ["POST", "POST"]


async def test_create_retried_after_429(
    fake: FakeTavus, client: TavusClient, sleeps: RecordedSleep
) -> None:
    """A 429 was not processed: create is resent after the server's Retry-After."""
    fake.reply("POST", "/conversations", 429, {"message": "slow"}, headers={"retry-after": "2"})
    fake.reply("POST", "/conversations", 200, bodies.CREATED_CONVERSATION)
    await client.create_conversation(CreateConversationRequest(replica_id="r1"))
    assert sleeps.delays_s == [2.0]


async def test_concurrency_limit_is_left_to_the_caller(
    fake: FakeTavus, client: TavusClient
) -> None:
    """The concurrency 400 is retryable for the job, but the client does not hammer Tavus."""
    fake.reply("POST", "/conversations", 400, bodies.CONCURRENCY)
    with pytest.raises(ConcurrencyLimitError):
        await client.create_conversation(
            CreateConversationRequest(replica_id="r1", conversation_name="x")
        )
    assert len(fake.seen) == 1


async def test_create_persona_and_patch_are_not_retried_after_5xx(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Non-idempotent persona writes are sent once when Tavus may have acted."""
    fake.expect("POST", "/personas", UNAVAILABLE)
    fake.expect("PATCH", "/personas/p1", UNAVAILABLE)
    with pytest.raises(ServerError):
        await client.create_persona(CreatePersonaRequest(persona_name="x", system_prompt="y"))
    with pytest.raises(ServerError):
        await client.patch_persona("p1", [{"op": "remove", "path": "/context"}])


async def test_deletes_are_retried(fake: FakeTavus, client: TavusClient) -> None:
    """Deletes are idempotent, so a transport error is retried."""
    fake.expect("DELETE", "/personas/p1", httpx.ReadError("reset"))
    fake.reply("DELETE", "/personas/p1", 204)
    fake.expect("DELETE", "/conversations/c1", UNAVAILABLE)
    fake.reply("DELETE", "/conversations/c1", 204)
    await client.delete_persona("p1")
    await client.delete_conversation("c1")


async def test_retries_are_logged_with_static_events(fake: FakeTavus, client: TavusClient) -> None:
    """Each failure logs ``tavus.request_failed`` and each retry ``tavus.retrying``, as key/values."""
    fake.expect("GET", "/replicas/r1", UNAVAILABLE)
    fake.reply("GET", "/replicas/r1", 200, bodies.REPLICA)
    with capture_logs() as logs:
        await client.get_replica("r1")
    assert [e["event"] for e in logs] == ["tavus.request_failed", "tavus.retrying"]
    assert logs[0] | {"error": "…"} == {
        "event": "tavus.request_failed",
        "log_level": "warning",
        "method": "GET",
        "endpoint": "/replicas/{replica_id}",
        "status": 503,
        "code": "tavus_unavailable",
        "error": "…",
        "attempt": 1,
        "will_retry": True,
    }
    assert logs[1]["delay_s"] == 0.5 and logs[1]["attempt"] == 2


async def test_observer_sees_every_attempt(fake: FakeTavus, retry: RetryPolicy) -> None:
    """The metrics observer gets (provider, endpoint template, status or None, duration)."""
    seen: list[tuple[str, str, int | None, float]] = []
    fake.expect("GET", "/replicas/r1", httpx.ConnectError("refused"))
    fake.expect("GET", "/replicas/r1", UNAVAILABLE)
    fake.reply("GET", "/replicas/r1", 200, bodies.REPLICA)
    async with _client(fake, retry, observer=lambda *a: seen.append(a)) as client:
        await client.get_replica("r1")
    assert [s[:3] for s in seen] == [
        ("tavus", "/replicas/{replica_id}", None),
        ("tavus", "/replicas/{replica_id}", 503),
        ("tavus", "/replicas/{replica_id}", 200),
    ]
    assert all(s[3] >= 0 for s in seen)


async def test_a_broken_observer_does_not_fail_the_call(
    fake: FakeTavus, retry: RetryPolicy
) -> None:
    """An observer that raises is logged (``tavus.observer_failed``) and the call still succeeds."""

    def broken(*_: object) -> None:
        raise ValueError("metrics bug")

    fake.reply("GET", "/replicas/r1", 200, bodies.REPLICA)
    with capture_logs() as logs:
        async with _client(fake, retry, observer=broken) as client:
            assert (await client.get_replica("r1")).replica_id == "r783537ef5"
    assert logs[0]["event"] == "tavus.observer_failed"


async def test_instant_policy_never_sleeps(fake: FakeTavus) -> None:
    """``RetryPolicy.instant()`` (test mode) makes the same retries without waiting."""
    fake.expect("GET", "/replicas/r1", UNAVAILABLE, times=2)
    policy = dataclasses.replace(
        RetryPolicy.instant(attempts=2), base_delay_s=30.0, jitter=lambda: 1.0
    )
    started = time.monotonic()
    async with _client(fake, policy) as client:
        with pytest.raises(ServerError):
            await client.get_replica("r1")
    assert len(fake.seen) == 2
    assert time.monotonic() - started < 5.0
