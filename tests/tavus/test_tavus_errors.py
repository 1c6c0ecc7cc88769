"""Every Tavus failure becomes one error class with the exact message a user reads."""

from __future__ import annotations

import bodies
import httpx
import pytest
from conftest import RecordedSleep
from fake_tavus import FakeTavus

from tavus._http import RetryPolicy
from tavus.client import TavusClient
from tavus.errors import (
    AuthError,
    ConcurrencyLimitError,
    NotFoundError,
    OutOfCreditsError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)
from tavus.models import CreateConversationRequest, CreatePersonaRequest


@pytest.fixture
def retry(sleeps: RecordedSleep) -> RetryPolicy:
    """One attempt only: these tests look at a single translation."""
    return RetryPolicy(attempts=1, sleep=sleeps)


async def test_401_names_the_setting_and_what_to_do(fake: FakeTavus, client: TavusClient) -> None:
    """A rejected key says which setting is wrong and where to fix it; it is fatal."""
    fake.reply("GET", "/replicas", 401, bodies.INVALID_TOKEN)
    with pytest.raises(AuthError) as caught:
        await client.list_replicas()
    error = caught.value
    assert str(error) == (
        "TAVUS_API_KEY was rejected by Tavus (401 Invalid access token). Check the key in the"
        " Tavus developer portal."
    )
    assert error.as_event_error() == {
        "code": "tavus_auth",
        "message": str(error),
        "retryable": False,
    }
    assert (error.status, error.method, error.url) == (401, "GET", "https://tavus.test/v2/replicas")


async def test_403_hints_at_ip_restricted_keys(fake: FakeTavus, client: TavusClient) -> None:
    """A 403 is an auth error that mentions keys limited to other IP addresses."""
    fake.reply("GET", "/replicas", 403, {"message": "Forbidden"})
    with pytest.raises(AuthError) as caught:
        await client.list_replicas()
    assert caught.value.code == "tavus_auth"
    assert "limited to other IP addresses" in str(caught.value)


async def test_402_out_of_credits(fake: FakeTavus, client: TavusClient) -> None:
    """402 is OutOfCreditsError telling the user to add credits."""
    fake.reply("POST", "/conversations", 402, bodies.OUT_OF_CREDITS)
    with pytest.raises(OutOfCreditsError) as caught:
        await client.create_conversation(CreateConversationRequest(replica_id="r1"))
    assert caught.value.code == "tavus_out_of_credits"
    assert str(caught.value) == (
        "The Tavus account is out of conversational credits (402 The user is out of"
        " conversational credits); add credits or upgrade the plan in the Tavus developer portal."
    )


async def test_concurrency_400_says_how_to_free_slots(fake: FakeTavus, client: TavusClient) -> None:
    """The concurrency 400 (under ``message``) is ConcurrencyLimitError naming the admin command."""
    fake.reply("POST", "/conversations", 400, bodies.CONCURRENCY)
    with pytest.raises(ConcurrencyLimitError) as caught:
        await client.create_conversation(CreateConversationRequest(replica_id="r1"))
    error = caught.value
    assert (error.code, error.retryable) == ("tavus_concurrency_limit", True)
    assert str(error) == (
        "The Tavus account has reached its maximum of concurrent conversations (400 User has"
        " reached maximum concurrent conversations). End idle conversations (e.g. `avatar-worker"
        " conversations end --all-active`) or raise the plan's limit."
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "call", "code", "message"),
    [
        (
            "GET",
            "/conversations/cdead",
            bodies.INVALID_CONVERSATION,
            lambda c: c.get_conversation("cdead"),
            "conversation_not_found",
            "Tavus conversation cdead does not exist on this account (400 Invalid conversation_id);"
            " list them with `avatar-worker conversations list`.",
        ),
        (
            "DELETE",
            "/personas/pdead",
            bodies.INVALID_PERSONA,
            lambda c: c.delete_persona("pdead"),
            "persona_not_found",
            "Tavus persona pdead does not exist on this account (400 Invalid persona_id); list yours"
            " with `avatar-worker personas list`.",
        ),
        (
            "GET",
            "/replicas/rdead",
            bodies.INVALID_REPLICA,
            lambda c: c.get_replica("rdead"),
            "replica_not_found",
            "Tavus replica rdead does not exist on this account (400 Invalid replica_id); list yours"
            " with `avatar-worker replicas list`.",
        ),
    ],
)
async def test_invalid_id_400_is_not_found(
    fake: FakeTavus,
    client: TavusClient,
    method,
    path,
    body,
    call,
    code,
    message,  # type: ignore[no-untyped-def]
) -> None:
    """Tavus's 400 "Invalid <kind>_id" becomes NotFoundError naming the id and the list command."""
    fake.reply(method, path, 400, body)
    with pytest.raises(NotFoundError) as caught:
        await call(client)
    assert (caught.value.code, str(caught.value)) == (code, message)


async def test_replica_uuid_with_a_persona_id_in_the_replica_slot(
    fake: FakeTavus, client: TavusClient
) -> None:
    """ "Invalid replica_uuid" explains the persona-id-in-replica-slot and foreign-replica causes."""
    fake.reply("POST", "/conversations", 400, bodies.INVALID_REPLICA_UUID)
    with pytest.raises(NotFoundError) as caught:
        await client.create_conversation(CreateConversationRequest(replica_id="pdced222244b"))
    assert caught.value.code == "replica_not_found"
    assert str(caught.value) == (
        "Tavus rejected replica pdced222244b (400 Invalid replica_uuid): it is not a usable replica"
        " of this account (pdced222244b looks like a persona id). A persona id in the replica"
        " slot, or a replica of another Tavus account, causes this; list yours with"
        " `avatar-worker replicas list`."
    )


async def test_invalid_persona_on_create_names_the_persona(
    fake: FakeTavus, client: TavusClient
) -> None:
    """An unknown persona_id on create conversation names that persona."""
    fake.reply("POST", "/conversations", 400, bodies.INVALID_PERSONA)
    with pytest.raises(NotFoundError) as caught:
        await client.create_conversation(CreateConversationRequest(persona_id="pgone"))
    assert caught.value.code == "persona_not_found"
    assert "Tavus persona pgone does not exist" in str(caught.value)


async def test_json_404_on_an_id_endpoint_is_not_found(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A gateway's JSON 404 on ``/conversations/{id}`` is also conversation_not_found."""
    fake.reply("GET", "/conversations/cgone", 404, {"message": "Not Found"})
    with pytest.raises(NotFoundError) as caught:
        await client.get_conversation("cgone")
    assert str(caught.value) == (
        "Tavus conversation cgone does not exist on this account (404 Not Found); list them with"
        " `avatar-worker conversations list`."
    )


async def test_html_404_is_short_and_points_at_the_base_url(
    fake: FakeTavus, client: TavusClient
) -> None:
    """An HTML 404 (wrong TAVUS_BASE_URL) is a short readable message, never the raw page."""
    fake.expect(
        "GET",
        "/conversations/c1",
        httpx.Response(
            404, text=bodies.HTML_404, headers={"content-type": "text/html; charset=UTF-8"}
        ),
    )
    with pytest.raises(UnexpectedResponseError) as caught:
        await client.get_conversation("c1")
    assert caught.value.code == "tavus_unexpected_response"
    assert str(caught.value) == (
        'Tavus answered GET /v2/conversations/c1 with 404 text/html "<!DOCTYPE html> <html'
        ' lang=en> <head><meta charset=utf-8> <title>Error 404 (Not …"'
        " where a JSON body was expected; check TAVUS_BASE_URL (now https://tavus.test/v2)."
    )
    assert "That's an error" not in str(caught.value)


async def test_json_404_on_a_list_endpoint_points_at_the_base_url(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A 404 on a list endpoint means a wrong base URL, not a missing object."""
    fake.reply("GET", "/replicas", 404, {"detail": "Not Found"})
    with pytest.raises(UnexpectedResponseError) as caught:
        await client.list_replicas()
    assert "check TAVUS_BASE_URL" in str(caught.value)


async def test_other_400_quotes_tavus_from_error_or_message(
    fake: FakeTavus, client: TavusClient
) -> None:
    """Other 4xx are RequestRejectedError quoting Tavus's text, under ``error`` or ``message``."""
    fake.reply("POST", "/conversations", 400, bodies.CREATE_FAILED)
    fake.reply("POST", "/conversations", 400, {"message": "max_participants must be >= 2"})
    req = CreateConversationRequest(replica_id="r1")
    for expected in (
        "Tavus rejected POST /v2/conversations (400 There was an error creating the conversation,"
        " please reach out to support at support@tavus.io!).",
        "Tavus rejected POST /v2/conversations (400 max_participants must be >= 2).",
    ):
        with pytest.raises(RequestRejectedError) as caught:
            await client.create_conversation(req)
        assert (caught.value.code, str(caught.value)) == ("tavus_rejected", expected)


async def test_plain_text_400_is_quoted_shortly(fake: FakeTavus, client: TavusClient) -> None:
    """A JSON string body is quoted, clipped to 200 characters."""
    fake.expect("POST", "/conversations", httpx.Response(400, json="x" * 500))
    with pytest.raises(RequestRejectedError) as caught:
        await client.create_conversation(CreateConversationRequest(replica_id="r1"))
    assert len(str(caught.value)) < 260


async def test_persona_rejected_at_creation_is_persona_invalid(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A 400 on create persona carries code persona_invalid."""
    fake.reply("POST", "/personas", 400, {"error": "system_prompt is required"})
    with pytest.raises(RequestRejectedError) as caught:
        await client.create_persona(CreatePersonaRequest(persona_name="x"))
    assert caught.value.code == "persona_invalid"
    assert str(caught.value) == "Tavus rejected POST /v2/personas (400 system_prompt is required)."


async def test_429_is_rate_limited_with_retry_after(fake: FakeTavus, client: TavusClient) -> None:
    """429 is RateLimitedError carrying the server's Retry-After in seconds."""
    fake.reply("GET", "/replicas", 429, {"message": "slow down"}, headers={"retry-after": "7"})
    with pytest.raises(RateLimitedError) as caught:
        await client.list_replicas()
    assert (caught.value.code, caught.value.retry_after_s) == ("tavus_rate_limited", 7.0)
    assert str(caught.value) == (
        "Tavus is rate limiting requests (429 on GET /v2/replicas); retry after 7 s."
    )


async def test_5xx_with_html_is_a_retryable_server_error(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A 502 HTML page is ServerError (tavus_unavailable, retryable) without the HTML."""
    fake.expect(
        "GET",
        "/replicas",
        httpx.Response(502, text=bodies.HTML_404, headers={"content-type": "text/html"}),
    )
    with pytest.raises(ServerError) as caught:
        await client.list_replicas()
    assert caught.value.as_event_error() == {
        "code": "tavus_unavailable",
        "message": "Tavus is unavailable (502 on GET /v2/replicas); try again later or check"
        " status.tavus.io.",
        "retryable": True,
    }


async def test_timeout_is_provider_timeout(fake: FakeTavus, client: TavusClient) -> None:
    """No answer in time is ProviderTimeoutError (provider_timeout), raised from the httpx error."""
    fake.expect("GET", "/replicas/r1", httpx.ReadTimeout("timed out"))
    with pytest.raises(ProviderTimeoutError) as caught:
        await client.get_replica("r1")
    error = caught.value
    assert (error.code, error.retryable, error.request_sent) == ("provider_timeout", True, True)
    assert str(error) == (
        "Tavus did not answer GET /v2/replicas/r1 within 10 s (ReadTimeout); it may be"
        " overloaded, try again later."
    )
    assert isinstance(error.__cause__, httpx.ReadTimeout)


async def test_408_is_provider_timeout(fake: FakeTavus, client: TavusClient) -> None:
    """An HTTP 408 is a retryable ProviderTimeoutError too."""
    fake.reply("GET", "/replicas/r1", 408, {"message": "Request Timeout"})
    with pytest.raises(ProviderTimeoutError) as caught:
        await client.get_replica("r1")
    assert caught.value.code == "provider_timeout"


async def test_connect_error_is_unavailable_and_not_sent(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A refused connection is TransportError (tavus_unavailable) with request_sent False."""
    fake.expect("GET", "/replicas/r1", httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(TransportError) as caught:
        await client.get_replica("r1")
    error = caught.value
    assert (error.code, error.request_sent) == ("tavus_unavailable", False)
    assert str(error) == (
        "Could not reach Tavus for GET /v2/replicas/r1 (ConnectError: [Errno 111] Connection"
        " refused); check TAVUS_BASE_URL (https://tavus.test/v2) and the network."
    )


async def test_read_error_may_have_been_sent(fake: FakeTavus, client: TavusClient) -> None:
    """A connection dropped mid-way is a TransportError that may have reached Tavus."""
    fake.expect("GET", "/replicas/r1", httpx.ReadError("connection reset"))
    with pytest.raises(TransportError) as caught:
        await client.get_replica("r1")
    assert caught.value.request_sent is True


@pytest.mark.parametrize(
    ("answer", "got"),
    [
        (
            httpx.Response(
                200,
                text="<html><body>Welcome to nginx!</body></html>",
                headers={"content-type": "text/html"},
            ),
            '200 text/html "<html><body>Welcome to nginx!</body></html>"',
        ),
        (httpx.Response(200), "200 an empty body"),
        (
            httpx.Response(301, headers={"location": "https://elsewhere.test/"}),
            "301 a redirect to https://elsewhere.test/",
        ),
    ],
)
async def test_non_json_success_is_unexpected(
    fake: FakeTavus, client: TavusClient, answer: httpx.Response, got: str
) -> None:
    """A 2xx/3xx that is not JSON says what came instead of JSON and to check the base URL."""
    fake.expect("GET", "/replicas/r1", answer)
    with pytest.raises(UnexpectedResponseError) as caught:
        await client.get_replica("r1")
    assert str(caught.value) == (
        f"Tavus answered GET /v2/replicas/r1 with {got} where a JSON body was expected; check"
        " TAVUS_BASE_URL (now https://tavus.test/v2)."
    )


async def test_wrong_json_shape_names_the_field(fake: FakeTavus, client: TavusClient) -> None:
    """JSON of the wrong shape names the field and the expected shape."""
    fake.reply("GET", "/conversations", 200, [{"conversation_id": "c1"}])
    fake.reply("GET", "/replicas/r1", 200, {"replica_name": "no id"})
    with pytest.raises(UnexpectedResponseError) as caught:
        await client.list_conversations()
    assert str(caught.value) == (
        "Tavus answered GET /v2/conversations with 200 a JSON array where a page of conversations"
        " ({data: [...], total_count}) was expected; check TAVUS_BASE_URL (now"
        " https://tavus.test/v2)."
    )
    with pytest.raises(UnexpectedResponseError) as caught:
        await client.get_replica("r1")
    assert "whose replica_id is wrong (Field required)" in str(caught.value)
    assert "a replica object was expected" in str(caught.value)


def test_every_error_is_a_provider_error() -> None:
    """All client errors share ProviderError, so callers can catch one type."""
    for cls in (
        AuthError,
        ConcurrencyLimitError,
        NotFoundError,
        OutOfCreditsError,
        ProviderTimeoutError,
        RateLimitedError,
        RequestRejectedError,
        ServerError,
        TransportError,
        UnexpectedResponseError,
    ):
        assert issubclass(cls, ProviderError)


async def test_html_401_from_a_gateway_is_still_auth(fake: FakeTavus, client: TavusClient) -> None:
    """A gateway's HTML 401 is tavus_auth without quoting the page."""
    fake.expect(
        "GET",
        "/replicas",
        httpx.Response(
            401,
            text="<html><body>401 Authorization Required</body></html>",
            headers={"content-type": "text/html"},
        ),
    )
    with pytest.raises(AuthError) as caught:
        await client.list_replicas()
    assert str(caught.value) == (
        "TAVUS_API_KEY was rejected by Tavus (401 Unauthorized). Check the key in the Tavus"
        " developer portal."
    )


async def test_credentials_in_the_base_url_stay_out_of_messages(fake: FakeTavus) -> None:
    """User info in TAVUS_BASE_URL is not repeated in error messages."""
    fake.expect("GET", "/replicas", httpx.ConnectError("refused"))
    async with TavusClient(
        api_key="tvs-secret-0123456789abcdef",
        base_url="https://user:hunter2@tavus.test/v2",
        transport=fake.transport,
        retry=RetryPolicy(attempts=1),
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.list_replicas()
    assert "hunter2" not in str(caught.value)
    assert caught.value.url == "https://tavus.test/v2/replicas"
