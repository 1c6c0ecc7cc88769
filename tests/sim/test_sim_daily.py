"""Daily /v1 as a client sees it: auth errors, room create/get/list/delete with Daily's checks
and quirks, meeting-token JWTs, and the rate-limit buckets."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx

from tavus.sim import ManualClock, Simulator, decode_hs256

DAILY_KEY = "test-daily-key"


async def test_missing_authorization_header_is_400(sim: Simulator) -> None:
    """No Authorization header gives 400 authorization-header-error."""
    async with httpx.AsyncClient(base_url=sim.daily_base_url) as client:
        response = await client.get("/rooms")
        malformed = await client.get("/rooms", headers={"Authorization": DAILY_KEY})
    assert response.status_code == 400
    assert response.json()["error"] == "authorization-header-error"
    assert malformed.status_code == 400


async def test_wrong_key_is_401_authentication_error(sim: Simulator) -> None:
    """A Bearer key the simulator does not know gives 401 {"error": "authentication-error"}."""
    async with httpx.AsyncClient(base_url=sim.daily_base_url) as client:
        response = await client.post(
            "/rooms", json={"name": "x"}, headers={"Authorization": "Bearer wrong"}
        )
    assert response.status_code == 401
    assert response.json() == {"error": "authentication-error"}
    assert sim.rooms == {}


async def test_create_room_returns_the_room_with_only_non_default_config(
    daily: httpx.AsyncClient,
) -> None:
    """Create answers 200 with id, url on the sim domain, .000Z created_at and non-defaults only."""
    body = {
        "name": "bot-3f9c2a71",
        "privacy": "private",
        "properties": {
            "exp": 1_790_003_600,
            "eject_at_room_exp": True,
            "max_participants": 2,
            "enable_chat": False,
            "start_video_off": True,
        },
    }
    response = await daily.post("/rooms", json=body)
    assert response.status_code == 200
    room = response.json()
    assert set(room) == {"id", "name", "api_created", "privacy", "url", "created_at", "config"}
    uuid.UUID(room["id"])
    assert room["url"] == "https://avatar-sim.daily.co/bot-3f9c2a71"
    assert room["privacy"] == "private" and room["api_created"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", room["created_at"])
    assert room["config"] == {
        "exp": 1_790_003_600,
        "eject_at_room_exp": True,
        "max_participants": 2,
        "start_video_off": True,
    }


async def test_empty_create_gets_a_random_public_room(daily: httpx.AsyncClient) -> None:
    """POST {} makes a public room with a 20-character random name and config {}."""
    room = (await daily.post("/rooms", json={})).json()
    assert re.fullmatch(r"[A-Za-z0-9]{20}", room["name"])
    assert room["privacy"] == "public" and room["config"] == {}


async def test_bad_room_names_are_400_invalid_request(daily: httpx.AsyncClient) -> None:
    """Names with spaces or #, or longer than 128 chars, give 400 invalid-request-error."""
    for name in ("has space", "hash#tag", "x" * 129):
        response = await daily.post("/rooms", json={"name": name})
        assert response.status_code == 400, name
        assert response.json()["error"] == "invalid-request-error"
    assert "invalid characters" in (await daily.post("/rooms", json={"name": "a b"})).json()["info"]


async def test_exp_must_be_a_number_in_the_future(
    clock: ManualClock, daily: httpx.AsyncClient
) -> None:
    """A string exp or a past exp gives 400 with Daily's info text; a float exp is accepted."""
    text = await daily.post("/rooms", json={"properties": {"exp": "soon"}})
    assert text.status_code == 400 and "should be a number of seconds" in text.json()["info"]
    past = await daily.post("/rooms", json={"properties": {"exp": clock() - 1}})
    assert past.status_code == 400 and "in the past" in past.json()["info"]
    assert (await daily.post("/rooms", json={"properties": {"exp": clock() + 60.5}})).is_success


async def test_duplicate_live_name_is_400_already_exists(daily: httpx.AsyncClient) -> None:
    """Creating a name that is live gives 400 invalid-request-error "a room named X already exists"."""
    assert (await daily.post("/rooms", json={"name": "dup"})).status_code == 200
    response = await daily.post("/rooms", json={"name": "dup"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid-request-error",
        "info": "a room named dup already exists",
    }


async def test_concurrent_creates_of_one_name_have_exactly_one_winner(
    sim: Simulator, daily: httpx.AsyncClient
) -> None:
    """Ten parallel creates of the same name: exactly one 200, the rest 400 already exists."""
    responses = await asyncio.gather(
        *(daily.post("/rooms", json={"name": "race"}) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 9
    assert list(sim.rooms) == ["race"]


async def test_get_room_and_unknown_room_404(daily: httpx.AsyncClient) -> None:
    """GET returns the created room; an unknown name is 404 not-found."""
    created = (await daily.post("/rooms", json={"name": "here"})).json()
    assert (await daily.get("/rooms/here")).json() == created
    missing = await daily.get("/rooms/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not-found", "info": "room nowhere not found"}


async def test_expired_rooms_are_absent_and_their_names_free(
    clock: ManualClock, daily: httpx.AsyncClient
) -> None:
    """After exp, a room is 404 on GET, missing from the list, and its name can be reused."""
    await daily.post("/rooms", json={"name": "brief", "properties": {"exp": clock() + 60}})
    clock.advance(61)
    assert (await daily.get("/rooms/brief")).status_code == 404
    assert (await daily.get("/rooms")).json() == {"total_count": 0, "data": []}
    assert (await daily.post("/rooms", json={"name": "brief"})).status_code == 200


async def test_list_is_newest_first_with_id_cursors(
    clock: ManualClock, daily: httpx.AsyncClient
) -> None:
    """The list is newest first; starting_after/ending_before take room ids; total counts all."""
    for index in range(5):
        await daily.post("/rooms", json={"name": f"room-{index}"})
        clock.advance(1)
    first = (await daily.get("/rooms", params={"limit": 2})).json()
    assert [r["name"] for r in first["data"]] == ["room-4", "room-3"]
    assert first["total_count"] == 5
    after = await daily.get(
        "/rooms", params={"limit": 2, "starting_after": first["data"][-1]["id"]}
    )
    assert [r["name"] for r in after.json()["data"]] == ["room-2", "room-1"]
    before_id = after.json()["data"][0]["id"]
    before = await daily.get("/rooms", params={"limit": 2, "ending_before": before_id})
    assert [r["name"] for r in before.json()["data"]] == ["room-4", "room-3"]
    oldest = await daily.get("/rooms", params={"limit": 2, "ending_before": "OLDEST"})
    assert [r["name"] for r in oldest.json()["data"]] == ["room-1", "room-0"]


async def test_list_limit_above_100_is_400(daily: httpx.AsyncClient) -> None:
    """limit must be at most 100."""
    response = await daily.get("/rooms", params={"limit": 101})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid-request-error"


async def test_delete_room_200_unknown_404_expired_404_deleted(
    sim: Simulator, clock: ManualClock, daily: httpx.AsyncClient
) -> None:
    """DELETE: live → 200 {deleted, name}; unknown → 404; expired → 404 with deleted: true."""
    sim.set_rate_limits(enabled=False)  # three deletes in a row exceed Daily's 2/s bucket
    await daily.post("/rooms", json={"name": "gone"})
    await daily.post("/rooms", json={"name": "old", "properties": {"exp": clock() + 10}})
    response = await daily.delete("/rooms/gone")
    assert response.status_code == 200
    assert response.json() == {"deleted": True, "name": "gone"}
    assert (await daily.delete("/rooms/gone")).status_code == 404
    clock.advance(11)
    expired = await daily.delete("/rooms/old")
    assert expired.status_code == 404
    assert expired.json()["deleted"] is True and expired.json()["error"] == "not-found"


async def test_meeting_token_is_hs256_with_abbreviated_claims(
    sim: Simulator, clock: ManualClock, daily: httpx.AsyncClient
) -> None:
    """The token is a JWT signed with the API key, carrying Daily's short claim names."""
    properties = {
        "room_name": "bot-1",
        "is_owner": True,
        "user_name": "Bot",
        "user_id": "bot-1",
        "exp": int(clock()) + 600,
        "eject_at_token_exp": True,
        "start_video_off": True,
    }
    response = await daily.post("/meeting-tokens", json={"properties": properties})
    assert response.status_code == 200
    token = response.json()["token"]
    assert set(response.json()) == {"token"}
    claims = decode_hs256(token, DAILY_KEY)
    assert claims["r"] == "bot-1" and claims["o"] is True and claims["u"] == "Bot"
    assert claims["ud"] == "bot-1" and claims["ejt"] is True and claims["vo"] is True
    assert claims["exp"] == properties["exp"] and claims["iat"] == int(clock())
    uuid.UUID(claims["d"])
    validated = await daily.get(f"/meeting-tokens/{token}")
    assert validated.status_code == 200
    assert validated.json() == properties


async def test_meeting_token_validation_errors(
    clock: ManualClock, daily: httpx.AsyncClient
) -> None:
    """A past exp or a 37-char user_id is 400; an expired or foreign token fails validation."""
    past = await daily.post("/meeting-tokens", json={"properties": {"exp": clock() - 5}})
    assert past.status_code == 400 and "in the past" in past.json()["info"]
    long_id = await daily.post("/meeting-tokens", json={"properties": {"user_id": "u" * 37}})
    assert long_id.status_code == 400
    token = (
        await daily.post("/meeting-tokens", json={"properties": {"exp": clock() + 10}})
    ).json()["token"]
    clock.advance(11)
    assert (await daily.get(f"/meeting-tokens/{token}")).status_code == 400
    assert (await daily.get("/meeting-tokens/not.a.token")).status_code == 400


async def test_rate_limit_gives_429_after_20_calls_in_a_second(
    sim: Simulator, daily: httpx.AsyncClient
) -> None:
    """The 21st call within a second gets 429 rate-limit-error, without Retry-After by default."""
    statuses = [(await daily.get("/rooms")).status_code for _ in range(20)]
    assert statuses == [200] * 20
    limited = await daily.get("/rooms")
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate-limit-error"
    assert "Retry-After" not in limited.headers


async def test_delete_bucket_is_tighter_and_retry_after_is_optional(
    sim: Simulator, daily: httpx.AsyncClient
) -> None:
    """The third room delete within a second is 429; with the flag on it carries Retry-After."""
    sim.set_rate_limits(enabled=True, retry_after=True)
    statuses = [(await daily.delete(f"/rooms/r{i}")).status_code for i in range(3)]
    assert statuses == [404, 404, 429]
    limited = await daily.delete("/rooms/r3")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await daily.get("/rooms")).status_code == 200  # the general bucket is separate


async def test_rate_limits_can_be_switched_off(sim: Simulator, daily: httpx.AsyncClient) -> None:
    """With rate limits off, bursts beyond the buckets are all served."""
    sim.set_rate_limits(enabled=False)
    statuses = {(await daily.delete(f"/rooms/r{i}")).status_code for i in range(5)}
    assert statuses == {404}
