"""DailyClient against a scripted ``httpx.MockTransport`` answering with the bodies recorded in
shared/reference/daily-api.md: shapes, error classification, find-or-create, retries, redaction."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tavus._http import RetryPolicy
from tavus.daily import DailyClient, Room, room_name_for
from tavus.errors import (
    AuthError,
    NotFoundError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)

API_KEY = "dly-secret-0123456789abcdef"
BASE_URL = "https://daily.test/v1"
NAME = "bot-3f9c2a71"
EXP = 1790003600

# ---- bodies recorded in the reference (§1–4), verbatim -----------------------------------------

ROOM: dict[str, Any] = {
    "id": "d61cd7b2-a273-42b4-89bd-be763fd562c1",
    "name": "bot-3f9c2a71",
    "api_created": True,
    "privacy": "private",
    "url": "https://your-domain.daily.co/bot-3f9c2a71",
    "created_at": "2026-09-27T12:00:00.000Z",
    "config": {
        "exp": 1790003600,
        "eject_at_room_exp": True,
        "max_participants": 2,
        "start_video_off": True,
    },
}
ROOM_LIST: dict[str, Any] = {
    "total_count": 2,
    "data": [
        {
            "id": "5e3cf703-5547-47d6-a371-37b1f0b4427f",
            "name": "w2pp2cf4kltgFACPKXmX",
            "api_created": False,
            "privacy": "public",
            "url": "https://api-demo.daily.co/w2pp2cf4kltgFACPKXmX",
            "created_at": "2019-01-26T09:01:22.000Z",
            "config": {"start_video_off": True},
        },
        {
            "id": "d61cd7b2-a273-42b4-89bd-be763fd562c1",
            "name": "hello",
            "api_created": False,
            "privacy": "public",
            "url": "https://your-domain.daily.co/hello",
            "created_at": "2019-01-25T23:49:42.000Z",
            "config": {},
        },
    ],
}
DELETED = {"deleted": True, "name": "bot-3f9c2a71"}
TOKEN = {
    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyIjoiYm90LTNmOWMyYTcxIiwiLi4uIjoiLi4uIn0.sig"
}
DUPLICATE = {"error": "invalid-request-error", "info": "a room named bot-3f9c2a71 already exists"}
INVALID_NAME = {
    "error": "invalid-request-error",
    "info": "bot 1 contains invalid characters (room names can contain A-Z, a-z, 0-9, '-', and '_')",
}
PAST_EXP = {
    "error": "invalid-request-error",
    "info": "exp was '1500000000', which is in the past rather than in the future",
}
NOT_FOUND = {"error": "not-found", "info": "room bot-3f9c2a71 not found"}
NO_HEADER = {"error": "authorization-header-error", "info": "missing Authorization header"}
BAD_HEADER = {"error": "invalid-request-error", "info": "bad Authorization header format"}
BAD_KEY = {"error": "authentication-error"}
FORBIDDEN = {"error": "forbidden-error", "info": "not allowed"}
PLAN = {
    "error": "invalid-plan-type",
    "info": "This feature is only available to paid accounts with a credit card on file.",
}
NOT_JSON = {"error": "json-parsing-error", "info": "Unexpected token"}
RATE_LIMITED = {"error": "rate-limit-error", "info": "too many requests"}
SERVER_ERROR = {"error": "server-error", "info": "something went wrong"}
HTML = "<html><head><title>404 Not Found</title></head><body>nginx</body></html>"

# ---- the scripted fake -------------------------------------------------------------------------

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeDaily:
    """Answers only the requests it expects, in order; anything else fails the test."""

    expected: list[tuple[str, str, Answer]] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)

    def reply(
        self, method: str, path: str, status: int = 200, body: Any = None, **kw: Any
    ) -> FakeDaily:
        answer = httpx.Response(status, json=body, **kw) if body is not None else None
        self.expected.append((method, "/v1" + path, answer or httpx.Response(status, **kw)))
        return self

    def fail(self, method: str, path: str, error: Exception) -> FakeDaily:
        self.expected.append((method, "/v1" + path, error))
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        where = f"{request.method} {request.url.path}"
        assert request.headers.get("authorization") == f"Bearer {API_KEY}", where
        if not self.expected:
            raise AssertionError(f"unexpected request {where}: the fake expected nothing more")
        method, path, answer = self.expected.pop(0)
        if (method, path) != (request.method, request.url.path):
            raise AssertionError(f"unexpected request {where}; expected {method} {path}")
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    def body(self, index: int = -1) -> Any:
        return json.loads(self.seen[index].content)

    @property
    def requests(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.seen]


class RecordedSleep:
    """An async sleep that records the backoff instead of waiting."""

    def __init__(self) -> None:
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)


@pytest.fixture
def fake() -> Iterator[FakeDaily]:
    daily = FakeDaily()
    yield daily
    assert not daily.expected, f"expected requests never came: {daily.expected}"


@pytest.fixture
def sleeps() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
async def daily(fake: FakeDaily, sleeps: RecordedSleep) -> AsyncIterator[DailyClient]:
    retry = RetryPolicy(attempts=3, base_delay_s=0.5, sleep=sleeps, jitter=lambda: 1.0)
    transport = httpx.MockTransport(fake)
    async with DailyClient(
        api_key=API_KEY, base_url=BASE_URL, transport=transport, retry=retry
    ) as client:
        yield client


async def raised(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


# ---- shapes ------------------------------------------------------------------------------------


async def test_create_room_sends_name_privacy_and_properties(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """create_room POSTs name, privacy and properties with a Bearer key and returns the room."""
    fake.reply("POST", "/rooms", body=ROOM)
    room = await daily.create_room(
        NAME,
        exp=EXP,
        max_participants=2,
        properties={"start_video_off": True, "enable_prejoin_ui": False},
    )
    assert fake.body() == {
        "name": NAME,
        "privacy": "private",
        "properties": {
            "start_video_off": True,
            "enable_prejoin_ui": False,
            "eject_at_room_exp": True,
            "exp": EXP,
            "max_participants": 2,
        },
    }
    assert (room.id, room.name, room.privacy, room.url) == (
        ROOM["id"],
        NAME,
        "private",
        "https://your-domain.daily.co/bot-3f9c2a71",
    )
    assert room.exp == EXP and room.api_created and room.config["max_participants"] == 2
    assert (
        room.created_at is not None and room.created_at.isoformat() == "2026-09-27T12:00:00+00:00"
    )


async def test_create_room_refuses_properties_that_repeat_named_arguments(
    daily: DailyClient,
) -> None:
    """exp passed inside properties is a ValueError before any request (the argument is the API)."""
    with pytest.raises(ValueError, match="exp"):
        await daily.create_room(NAME, exp=None, properties={"exp": EXP})


async def test_room_model_keeps_unknown_fields() -> None:
    """A room body with fields the model does not know still parses, keeping them."""
    room = Room.model_validate({**ROOM, "new_field": 1, "config": {}})
    assert room.model_extra == {"new_field": 1} and room.exp is None


async def test_get_room_returns_the_room(daily: DailyClient, fake: FakeDaily) -> None:
    """get_room GETs /rooms/{name} and parses the recorded room object."""
    fake.reply("GET", f"/rooms/{NAME}", body=ROOM)
    assert (await daily.get_room(NAME)).id == ROOM["id"]


async def test_get_unknown_room_is_room_not_found(daily: DailyClient, fake: FakeDaily) -> None:
    """A 404 not-found on GET is a NotFoundError room_not_found naming the room, not retried."""
    fake.reply("GET", f"/rooms/{NAME}", 404, NOT_FOUND)
    error = await raised(daily.get_room(NAME))
    assert isinstance(error, NotFoundError) and error.code == "room_not_found"
    assert error.message == (
        f"Daily room {NAME} does not exist (404 not-found: room {NAME} not found);"
        " it may have expired or been deleted."
    )
    assert not error.retryable and error.status == 404


async def test_list_rooms_parses_the_page_and_sends_the_cursor(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """list_rooms sends limit and starting_after and returns total_count and the rooms."""
    fake.reply("GET", "/rooms", body=ROOM_LIST)
    page = await daily.list_rooms(limit=2, starting_after="some-id")
    assert dict(fake.seen[0].url.params) == {"limit": "2", "starting_after": "some-id"}
    assert page.total_count == 2
    assert [r.name for r in page.data] == ["w2pp2cf4kltgFACPKXmX", "hello"]
    assert page.data[0].api_created is False and page.data[1].config == {}


async def test_iter_rooms_pages_by_room_id_until_a_page_is_empty(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """iter_rooms follows starting_after=<last room id> until Daily returns an empty page."""
    first, second = ROOM_LIST["data"]
    fake.reply("GET", "/rooms", body={"total_count": 2, "data": [first]})
    fake.reply("GET", "/rooms", body={"total_count": 2, "data": [second]})
    fake.reply("GET", "/rooms", body={"total_count": 2, "data": []})
    names = [room.name async for room in daily.iter_rooms(page_size=1)]
    assert names == ["w2pp2cf4kltgFACPKXmX", "hello"]
    cursors = [r.url.params.get("starting_after") for r in fake.seen]
    assert cursors == [None, first["id"], second["id"]]


async def test_delete_room_is_true_when_deleted(daily: DailyClient, fake: FakeDaily) -> None:
    """A 200 {"deleted": true} makes delete_room return True."""
    fake.reply("DELETE", f"/rooms/{NAME}", body=DELETED)
    assert await daily.delete_room(NAME) is True


@pytest.mark.parametrize(
    "body",
    [
        NOT_FOUND,
        {**NOT_FOUND, "deleted": True},
        {"deleted": True, "name": NAME},
    ],
    ids=["unknown", "expired", "expired-bare"],
)
async def test_delete_room_that_is_gone_is_false_without_error(
    daily: DailyClient, fake: FakeDaily, body: dict[str, Any]
) -> None:
    """A 404 on DELETE (unknown, or expired with deleted: true) returns False, not an error."""
    fake.reply("DELETE", f"/rooms/{NAME}", 404, body)
    with capture_logs() as logs:
        assert await daily.delete_room(NAME) is False
    assert [e["event"] for e in logs] == ["daily.room_already_gone"]


async def test_delete_room_on_an_html_404_is_unexpected(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """An HTML 404 (a wrong DAILY_API_URL) is not mistaken for "already deleted"."""
    fake.reply("DELETE", f"/rooms/{NAME}", 404, text=HTML, headers={"content-type": "text/html"})
    error = await raised(daily.delete_room(NAME))
    assert isinstance(error, UnexpectedResponseError) and "DAILY_API_URL" in error.message
    assert error.code == "daily_unexpected_response"


async def test_create_meeting_token_sends_properties_and_returns_the_jwt(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """create_meeting_token sends everything under properties and returns the token string."""
    fake.reply("POST", "/meeting-tokens", body=TOKEN)
    token = await daily.create_meeting_token(
        NAME, is_owner=True, user_name="Bot", user_id=NAME, exp=EXP, eject_at_token_exp=True
    )
    assert token == TOKEN["token"]
    assert fake.body() == {
        "properties": {
            "room_name": NAME,
            "is_owner": True,
            "user_name": "Bot",
            "user_id": NAME,
            "exp": EXP,
            "eject_at_token_exp": True,
        }
    }


async def test_minimal_meeting_token_omits_unset_properties(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """A non-owner token without name, id or exp sends only room_name and is_owner."""
    fake.reply("POST", "/meeting-tokens", body=TOKEN)
    await daily.create_meeting_token(NAME, is_owner=False)
    assert fake.body() == {"properties": {"room_name": NAME, "is_owner": False}}


async def test_token_reply_without_token_is_unexpected(daily: DailyClient, fake: FakeDaily) -> None:
    """A 200 without "token" is an UnexpectedResponseError saying what was expected."""
    fake.reply("POST", "/meeting-tokens", body={"tokn": "x"})
    error = await raised(daily.create_meeting_token(NAME, is_owner=False))
    assert isinstance(error, UnexpectedResponseError)
    assert 'a token ({"token": "<JWT>"})' in error.message and "token is wrong" in error.message


# ---- error classification ----------------------------------------------------------------------

CLASSIFIED = [
    (
        "no-header",
        400,
        NO_HEADER,
        AuthError,
        "daily_auth",
        "Daily did not accept the Authorization header (400 authorization-header-error:"
        " missing Authorization header); DAILY_API_KEY is probably empty or malformed.",
    ),
    (
        "bad-header",
        400,
        BAD_HEADER,
        AuthError,
        "daily_auth",
        "(400 invalid-request-error: bad Authorization header format)",
    ),
    (
        "bad-key",
        401,
        BAD_KEY,
        AuthError,
        "daily_auth",
        "DAILY_API_KEY was rejected by Daily (401 authentication-error). Check the key in the"
        " Daily dashboard.",
    ),
    ("forbidden", 403, FORBIDDEN, AuthError, "daily_auth", "(403 forbidden-error: not allowed)"),
    ("not-found", 404, NOT_FOUND, NotFoundError, "room_not_found", f"Daily room {NAME}"),
    (
        "plan",
        400,
        PLAN,
        RequestRejectedError,
        "daily_rejected",
        "(400 invalid-plan-type: This feature is only available to paid accounts",
    ),
    (
        "json",
        400,
        NOT_JSON,
        RequestRejectedError,
        "daily_rejected",
        f"Daily rejected GET /v1/rooms/{NAME} (400 json-parsing-error: Unexpected token).",
    ),
    (
        "rate",
        429,
        RATE_LIMITED,
        RateLimitedError,
        "daily_rate_limited",
        f"Daily is rate limiting requests (429 rate-limit-error on GET /v1/rooms/{NAME}).",
    ),
    (
        "server",
        500,
        SERVER_ERROR,
        ServerError,
        "daily_unavailable",
        f"Daily is unavailable (500 server-error on GET /v1/rooms/{NAME}); try again later",
    ),
    ("bad-gateway", 502, None, ServerError, "daily_unavailable", "Daily is unavailable (502 on"),
    ("timeout", 408, None, ProviderTimeoutError, "provider_timeout", "Daily timed out"),
    (
        "foreign-json",
        400,
        {"message": "Invalid access token"},
        UnexpectedResponseError,
        "daily_unexpected_response",
        "check DAILY_API_URL (now https://daily.test/v1)",
    ),
    (
        "foreign-404",
        404,
        {"error": "Not Found"},
        UnexpectedResponseError,
        "daily_unexpected_response",
        'where a Daily "not-found" error body was expected',
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "says"),
    [case[1:] for case in CLASSIFIED],
    ids=[case[0] for case in CLASSIFIED],
)
async def test_error_responses_are_classified(
    fake: FakeDaily,
    status: int,
    body: dict[str, Any] | None,
    kind: type[ProviderError],
    code: str,
    says: str,
) -> None:
    """Each recorded Daily error body becomes the documented class, code and message."""
    fake.reply("GET", f"/rooms/{NAME}", status, body)
    async with one_shot(fake) as client:
        error = await raised(client.get_room(NAME))
    assert type(error) is kind and error.code == code, repr(error)
    assert says in error.message
    assert (error.provider, error.status, error.method) == ("daily", status, "GET")


async def test_retry_after_header_is_kept_on_rate_limit(fake: FakeDaily) -> None:
    """A 429 with Retry-After exposes retry_after_s and says when to retry."""
    fake.reply("GET", f"/rooms/{NAME}", 429, RATE_LIMITED, headers={"Retry-After": "3"})
    async with one_shot(fake) as client:
        error = await raised(client.get_room(NAME))
    assert isinstance(error, RateLimitedError) and error.retry_after_s == 3.0
    assert error.message.endswith("; retry after 3 s.") and error.retryable


async def test_html_answer_suggests_checking_daily_api_url(fake: FakeDaily) -> None:
    """An HTML page where JSON was expected is an UnexpectedResponseError naming DAILY_API_URL."""
    fake.reply("GET", "/rooms", 200, text=HTML, headers={"content-type": "text/html"})
    async with one_shot(fake) as client:
        error = await raised(client.list_rooms())
    assert isinstance(error, UnexpectedResponseError) and not error.retryable
    assert error.message.startswith("Daily answered GET /v1/rooms with 200 text/html")
    assert "check DAILY_API_URL (now https://daily.test/v1)" in error.message


@pytest.mark.parametrize(
    ("failure", "kind", "code", "sent"),
    [
        (httpx.ConnectError("connection refused"), TransportError, "daily_unavailable", False),
        (httpx.ReadError("connection reset"), TransportError, "daily_unavailable", True),
        (httpx.ConnectTimeout("timed out"), ProviderTimeoutError, "provider_timeout", False),
        (httpx.ReadTimeout("timed out"), ProviderTimeoutError, "provider_timeout", True),
    ],
    ids=["connect", "read", "connect-timeout", "read-timeout"],
)
async def test_transport_failures_are_classified(
    fake: FakeDaily, failure: Exception, kind: type[TransportError], code: str, sent: bool
) -> None:
    """Connection failures and timeouts are retryable transport errors saying whether sent."""
    fake.fail("GET", "/rooms", failure)
    async with one_shot(fake) as client:
        error = await raised(client.list_rooms())
    assert type(error) is kind and error.code == code and error.retryable
    assert isinstance(error, TransportError) and error.request_sent is sent
    assert error.__cause__ is failure


def one_shot(fake: FakeDaily) -> DailyClient:
    """A client that never retries, to see one answer's classification."""
    transport = httpx.MockTransport(fake)
    retry = RetryPolicy.instant(attempts=1)
    return DailyClient(api_key=API_KEY, base_url=BASE_URL, transport=transport, retry=retry)


# ---- find-or-create ----------------------------------------------------------------------------


async def test_duplicate_name_adopts_the_existing_room(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """A 400 "already exists" on create is followed by GET, and the existing room is returned."""
    fake.reply("POST", "/rooms", 400, DUPLICATE).reply("GET", f"/rooms/{NAME}", body=ROOM)
    with capture_logs() as logs:
        room = await daily.create_room(NAME, exp=EXP)
    assert room.id == ROOM["id"] and sleeps.delays_s == []
    assert [e["event"] for e in logs] == ["daily.room_adopted"]


async def test_adopting_a_room_of_other_privacy_is_refused(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """An existing public room is never handed out for a private create."""
    public = {**ROOM, "privacy": "public"}
    fake.reply("POST", "/rooms", 400, DUPLICATE).reply("GET", f"/rooms/{NAME}", body=public)
    error = await raised(daily.create_room(NAME, exp=EXP))
    assert isinstance(error, RequestRejectedError) and error.code == "daily_rejected"
    assert error.message.startswith(f"Daily room {NAME} already exists as a public room")


@pytest.mark.parametrize("body", [INVALID_NAME, PAST_EXP], ids=["invalid-name", "past-exp"])
async def test_rejected_create_quotes_daily_when_no_room_exists(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep, body: dict[str, str]
) -> None:
    """A 400 for which GET finds no room raises daily_rejected quoting Daily's info, no retry."""
    fake.reply("POST", "/rooms", 400, body).reply("GET", f"/rooms/{NAME}", 404, NOT_FOUND)
    error = await raised(daily.create_room(NAME, exp=EXP))
    assert isinstance(error, RequestRejectedError) and error.code == "daily_rejected"
    assert (
        error.message
        == f"Daily rejected POST /v1/rooms (400 invalid-request-error: {body['info']})."
    )
    assert sleeps.delays_s == [] and not error.retryable


async def test_auth_error_on_create_is_not_followed_by_a_lookup(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """A 401 on create raises daily_auth at once: no GET, no retry."""
    fake.reply("POST", "/rooms", 401, BAD_KEY)
    error = await raised(daily.create_room(NAME, exp=EXP))
    assert isinstance(error, AuthError) and fake.requests == ["POST /v1/rooms"]


async def test_create_after_5xx_adopts_the_room_the_first_attempt_made(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """After a 503 on create, a GET by name finds the room and no second POST is sent."""
    fake.reply("POST", "/rooms", 503, SERVER_ERROR).reply("GET", f"/rooms/{NAME}", body=ROOM)
    room = await daily.create_room(NAME, exp=EXP)
    assert room.id == ROOM["id"] and sleeps.delays_s == [0.5]
    assert fake.requests == ["POST /v1/rooms", f"GET /v1/rooms/{NAME}"]


@pytest.mark.parametrize(
    "first",
    [httpx.Response(503, json=SERVER_ERROR), httpx.ReadTimeout("timed out")],
    ids=["503", "read-timeout"],
)
async def test_create_after_an_unclear_failure_checks_then_posts_again(
    daily: DailyClient, fake: FakeDaily, first: httpx.Response | Exception
) -> None:
    """After a 5xx or a lost answer, a GET by name that finds nothing lets the POST be retried."""
    fake.expected.append(("POST", "/v1/rooms", first))
    fake.reply("GET", f"/rooms/{NAME}", 404, NOT_FOUND).reply("POST", "/rooms", body=ROOM)
    assert (await daily.create_room(NAME, exp=EXP)).id == ROOM["id"]
    assert fake.body(0) == fake.body(2)


async def test_create_is_posted_again_when_the_request_never_left(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """A connect error on create is retried straight away with the same body, no lookup."""
    fake.fail("POST", "/rooms", httpx.ConnectError("refused")).reply("POST", "/rooms", body=ROOM)
    await daily.create_room(NAME, exp=EXP)
    assert fake.requests == ["POST /v1/rooms", "POST /v1/rooms"] and sleeps.delays_s == [0.5]


async def test_rate_limited_create_backs_off_exponentially(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """Two 429s without Retry-After are retried after 0.5 s then 1 s, no lookup in between."""
    fake.reply("POST", "/rooms", 429, RATE_LIMITED).reply("POST", "/rooms", 429, RATE_LIMITED)
    fake.reply("POST", "/rooms", body=ROOM)
    await daily.create_room(NAME, exp=EXP)
    assert sleeps.delays_s == [0.5, 1.0] and len(fake.requests) == 3


async def test_rate_limited_create_honours_retry_after(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """A 429 with Retry-After: 2 waits 2 s before the next POST."""
    fake.reply("POST", "/rooms", 429, RATE_LIMITED, headers={"Retry-After": "2"})
    fake.reply("POST", "/rooms", body=ROOM)
    await daily.create_room(NAME, exp=EXP)
    assert sleeps.delays_s == [2.0]


# ---- retry rules of the other calls ------------------------------------------------------------


async def test_reads_give_up_after_the_policy_attempts(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """Three 503s on GET raise daily_unavailable after backing off 0.5 s and 1 s."""
    for _ in range(3):
        fake.reply("GET", f"/rooms/{NAME}", 503, SERVER_ERROR)
    error = await raised(daily.get_room(NAME))
    assert isinstance(error, ServerError) and error.code == "daily_unavailable"
    assert sleeps.delays_s == [0.5, 1.0]


async def test_client_errors_are_not_retried(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """A 400 on list is raised after one request."""
    fake.reply("GET", "/rooms", 400, {"error": "invalid-request-error", "info": "limit"})
    await raised(daily.list_rooms(limit=1000))
    assert len(fake.requests) == 1 and sleeps.delays_s == []


async def test_delete_is_retried_after_5xx(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """A 503 on DELETE is retried (deleting is idempotent) and the room reported deleted."""
    fake.reply("DELETE", f"/rooms/{NAME}", 503, SERVER_ERROR)
    fake.reply("DELETE", f"/rooms/{NAME}", body=DELETED)
    assert await daily.delete_room(NAME) is True and sleeps.delays_s == [0.5]


async def test_meeting_token_is_retried_after_5xx(
    daily: DailyClient, fake: FakeDaily, sleeps: RecordedSleep
) -> None:
    """Minting a token is retried after a 503 (a second token is harmless)."""
    fake.reply("POST", "/meeting-tokens", 503, SERVER_ERROR)
    fake.reply("POST", "/meeting-tokens", body=TOKEN)
    assert await daily.create_meeting_token(NAME, is_owner=True) == TOKEN["token"]


# ---- the key stays secret, and closing ---------------------------------------------------------


async def test_the_key_never_shows_in_errors_logs_or_reprs(
    daily: DailyClient, fake: FakeDaily
) -> None:
    """An error echoing the key, and the logs of its retries, show *** instead of the key."""
    echo = {"error": "invalid-request-error", "info": f"bad key {API_KEY}"}
    fake.reply("GET", "/rooms", 400, echo)
    fake.fail("GET", "/rooms", httpx.ConnectError(f"cannot use {API_KEY}"))
    fake.fail("GET", "/rooms", httpx.ConnectError(f"cannot use {API_KEY}"))
    fake.fail("GET", "/rooms", httpx.ConnectError(f"cannot use {API_KEY}"))
    with capture_logs() as logs:
        rejected = await raised(daily.list_rooms())
        unreachable = await raised(daily.list_rooms())
    assert "bad key ***" in rejected.message
    shown = [str(rejected), repr(rejected), str(unreachable), repr(unreachable), repr(daily)]
    shown += [repr(entry) for entry in logs]
    assert len(logs) >= 4 and not [text for text in shown if API_KEY in text]


async def test_observer_sees_endpoint_templates_not_room_names(fake: FakeDaily) -> None:
    """The metrics hook gets ("daily", "/rooms/{name}", status, duration) for each attempt."""
    seen: list[tuple[str, str, int | None]] = []
    fake.reply("DELETE", f"/rooms/{NAME}", 404, NOT_FOUND).reply("POST", "/rooms", body=ROOM)
    async with DailyClient(
        api_key=API_KEY,
        base_url=BASE_URL,
        transport=httpx.MockTransport(fake),
        observer=lambda provider, endpoint, status, _s: seen.append((provider, endpoint, status)),
    ) as client:
        await client.delete_room(NAME)
        await client.create_room(NAME, exp=None)
    assert seen == [("daily", "/rooms/{name}", 404), ("daily", "/rooms", 200)]


async def test_aclose_is_idempotent(fake: FakeDaily) -> None:
    """Closing twice (context exit, then aclose) raises nothing."""
    async with one_shot(fake) as client:
        pass
    await client.aclose()


# ---- room names --------------------------------------------------------------------------------

DAILY_NAME = re.compile(r"[A-Za-z0-9_-]{1,30}")
SESSION_ID = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=64)


def test_room_name_of_a_plain_short_id_is_prefix_and_id() -> None:
    """A short id that is already a valid name becomes prefix + id, unchanged."""
    assert room_name_for("sess_42-a") == "aw-sess_42-a"
    assert room_name_for("sess_42-a", prefix="bot-") == "bot-sess_42-a"


def test_room_name_of_an_id_with_dots_gets_a_hash() -> None:
    """Dots are replaced and a hash added, so "a.b" and "a-b" get different rooms."""
    assert room_name_for("a.b") != room_name_for("a-b") == "aw-a-b"
    assert re.fullmatch(r"aw-a-b-[0-9a-f]{10}", room_name_for("a.b"))


def test_room_name_of_a_long_id_is_truncated_with_a_hash() -> None:
    """A 64-char id becomes a 30-char name that still differs from its 63-char prefix's."""
    long_id = "x" * 64
    assert len(room_name_for(long_id)) == 30
    assert room_name_for(long_id) != room_name_for(long_id[:-1])


def test_room_name_rejects_empty_ids_and_bad_prefixes() -> None:
    """An empty id or a prefix Daily would refuse is a ValueError."""
    with pytest.raises(ValueError, match="session id"):
        room_name_for("")
    with pytest.raises(ValueError, match="prefix"):
        room_name_for("s1", prefix="a.")


@given(SESSION_ID)
def test_room_names_are_valid_short_and_deterministic(session_id: str) -> None:
    """Every session id maps, always to the same name, to a valid Daily name of ≤30 chars."""
    name = room_name_for(session_id)
    assert DAILY_NAME.fullmatch(name) and name == room_name_for(session_id)


@given(st.sets(SESSION_ID, min_size=2, max_size=50))
def test_distinct_session_ids_get_distinct_rooms(session_ids: set[str]) -> None:
    """Different session ids never share a room name."""
    assert len({room_name_for(s) for s in session_ids}) == len(session_ids)
