"""DailyClient against the in-process simulator: what Daily would record (rooms, token claims),
find-or-create on a redelivered job, harmless double deletes, and rate limits ridden out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tavus._http import RetryPolicy
from tavus.daily import DailyClient, room_name_for
from tavus.errors import AuthError, RateLimitedError
from tavus.sim import ManualClock, Simulator, decode_hs256

DAILY_KEY = "dk"
START_S = 1_790_000_000
EXP = START_S + 3600


class RecordedSleep:
    """An async sleep that records the backoff instead of waiting."""

    def __init__(self) -> None:
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_s=START_S)


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    simulator = Simulator(tavus_api_keys={"k"}, daily_api_keys={DAILY_KEY}, clock=clock)
    async with simulator.running(host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
def sleeps() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
async def daily(sim: Simulator, sleeps: RecordedSleep) -> AsyncIterator[DailyClient]:
    retry = RetryPolicy(attempts=3, base_delay_s=0.5, sleep=sleeps, jitter=lambda: 1.0)
    async with DailyClient(api_key=DAILY_KEY, base_url=sim.daily_base_url, retry=retry) as client:
        yield client


async def test_private_room_is_created_with_exp_and_eject(
    daily: DailyClient, sim: Simulator
) -> None:
    """A private room with exp and eject_at_room_exp is what the simulator holds and returns."""
    name = room_name_for("session.0001")
    room = await daily.create_room(name, exp=EXP, max_participants=2)
    held = sim.rooms[name]
    assert (held.name, held.privacy, held.properties["exp"]) == (name, "private", EXP)
    assert held.properties["eject_at_room_exp"] is True
    assert (room.id, room.privacy, room.exp) == (held.id, "private", EXP)
    assert room.url == f"https://avatar-sim.daily.co/{name}"
    assert room.config == {"exp": EXP, "eject_at_room_exp": True, "max_participants": 2}
    [call] = sim.calls_to("POST /v1/rooms")
    assert call.json == {
        "name": name,
        "privacy": "private",
        "properties": {"eject_at_room_exp": True, "exp": EXP, "max_participants": 2},
    }


async def test_bot_and_user_tokens_carry_the_right_claims(
    daily: DailyClient, sim: Simulator
) -> None:
    """The bot's token is an owner's; the user's is not and carries the user's name."""
    name = room_name_for("session-0002")
    await daily.create_room(name, exp=EXP)
    bot = await daily.create_meeting_token(name, is_owner=True, user_name="Avatar", exp=EXP)
    user = await daily.create_meeting_token(
        name, is_owner=False, user_name="Ada", user_id="user-17", exp=EXP
    )
    bot_claims, user_claims = decode_hs256(bot, DAILY_KEY), decode_hs256(user, DAILY_KEY)
    assert (bot_claims["r"], bot_claims["o"], bot_claims["u"], bot_claims["exp"]) == (
        name,
        True,
        "Avatar",
        EXP,
    )
    assert (user_claims["r"], user_claims["o"], user_claims["u"], user_claims["exp"]) == (
        name,
        False,
        "Ada",
        EXP,
    )
    assert user_claims["ud"] == "user-17"


async def test_redelivered_create_adopts_the_existing_room(
    daily: DailyClient, sim: Simulator
) -> None:
    """Creating the same name twice returns the first room; Daily still holds only one."""
    name = room_name_for("session-0003")
    first = await daily.create_room(name, exp=EXP)
    again = await daily.create_room(name, exp=EXP)
    assert again.id == first.id and list(sim.rooms) == [name]
    statuses = [(c.method, c.status) for c in sim.calls]
    assert statuses == [("POST", 200), ("POST", 400), ("GET", 200)]


async def test_deleting_twice_is_harmless(daily: DailyClient, sim: Simulator) -> None:
    """The first delete returns True, the second False, and neither raises."""
    name = room_name_for("session-0004")
    await daily.create_room(name, exp=EXP)
    assert await daily.delete_room(name) is True
    assert await daily.delete_room(name) is False
    assert name not in sim.rooms


async def test_deleting_an_expired_room_reports_it_gone(
    daily: DailyClient, sim: Simulator, clock: ManualClock
) -> None:
    """An expired room (Daily's 404 with deleted: true) deletes as already gone."""
    name = room_name_for("session-0005")
    await daily.create_room(name, exp=START_S + 60)
    clock.advance(120)
    assert await daily.delete_room(name) is False
    assert [room.name async for room in daily.iter_rooms()] == []


async def test_iter_rooms_walks_every_page(daily: DailyClient) -> None:
    """iter_rooms with pages of 2 yields all five rooms, newest first."""
    names = [room_name_for(f"session-1{i}") for i in range(5)]
    for name in names:
        await daily.create_room(name, exp=EXP, privacy="public")
    listed = [room.name async for room in daily.iter_rooms(page_size=2)]
    assert sorted(listed) == sorted(names) and len(listed) == 5


async def test_rate_limited_create_is_retried_with_backoff(
    daily: DailyClient, sim: Simulator, sleeps: RecordedSleep
) -> None:
    """Two 429 rate-limit-errors on create are retried after 0.5 s and 1 s; one room results."""
    sim.faults.fail_next("POST /v1/rooms", n=2, status=429)
    name = room_name_for("session-0006")
    room = await daily.create_room(name, exp=EXP)
    assert sleeps.delays_s == [0.5, 1.0] and sim.rooms[name].id == room.id
    assert [c.status for c in sim.calls_to("POST /v1/rooms")] == [429, 429, 200]


async def test_rate_limit_retry_after_is_honoured(
    daily: DailyClient, sim: Simulator, sleeps: RecordedSleep
) -> None:
    """A 429 with Retry-After: 2 is retried after 2 s."""
    sim.faults.fail_next("GET /v1/rooms", status=429, retry_after_s=2)
    await daily.list_rooms()
    assert sleeps.delays_s == [2.0]


async def test_persistent_rate_limit_surfaces_as_retryable(
    daily: DailyClient, sim: Simulator
) -> None:
    """Deletes past Daily's 2-per-second bucket end in a retryable daily_rate_limited error."""
    names = [room_name_for(f"session-2{i}") for i in range(3)]
    for name in names:
        await daily.create_room(name, exp=EXP)
    await daily.delete_room(names[0])
    await daily.delete_room(names[1])
    with pytest.raises(RateLimitedError) as info:
        await daily.delete_room(names[2])
    assert info.value.code == "daily_rate_limited" and info.value.retryable
    assert [c.status for c in sim.calls_to("DELETE /v1/rooms/*")][-3:] == [429, 429, 429]


async def test_dropped_create_is_checked_then_posted_again(
    daily: DailyClient, sim: Simulator
) -> None:
    """A create whose connection drops is followed by a lookup by name, then one more POST."""
    sim.faults.drop_next("POST /v1/rooms")
    name = room_name_for("session-0007")
    await daily.create_room(name, exp=EXP)
    assert [(c.method, c.status) for c in sim.calls] == [
        ("POST", None),
        ("GET", 404),
        ("POST", 200),
    ]


async def test_wrong_key_is_daily_auth(sim: Simulator) -> None:
    """A key the simulator does not know fails with daily_auth and the dashboard hint."""
    async with DailyClient(api_key="not-the-key", base_url=sim.daily_base_url) as client:
        with pytest.raises(AuthError) as info:
            await client.create_room(room_name_for("session-0008"), exp=EXP)
    assert info.value.code == "daily_auth"
    assert info.value.message == (
        "DAILY_API_KEY was rejected by Daily (401 authentication-error). Check the key in the"
        " Daily dashboard."
    )
    assert "not-the-key" not in repr(info.value)
