"""The API key never shows up in a repr, an exception message or a log line."""

from __future__ import annotations

import logging

import httpx
import pytest
from conftest import API_KEY, BASE_URL
from fake_tavus import FakeTavus
from structlog.testing import capture_logs

from tavus._http import RetryPolicy
from tavus.client import TavusClient
from tavus.errors import ProviderError


def test_repr_shows_the_base_url_not_the_key() -> None:
    """``repr(TavusClient)`` names the base URL only."""
    client = TavusClient(api_key=API_KEY, base_url=BASE_URL)
    assert repr(client) == "TavusClient(base_url='https://tavus.test/v2')"
    assert API_KEY not in repr(vars(client))


async def test_key_echoed_by_the_server_is_redacted(
    fake: FakeTavus, client: TavusClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Even when Tavus echoes the key in an error body, message and logs show ``***``."""
    fake.reply("GET", "/replicas", 401, {"message": f"Invalid access token {API_KEY}"})
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs, pytest.raises(ProviderError) as caught:
        await client.list_replicas()
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert "***" in str(caught.value)
    assert API_KEY not in repr(logs)
    assert API_KEY not in caplog.text


async def test_key_never_logged_across_failures(
    fake: FakeTavus, caplog: pytest.LogCaptureFixture
) -> None:
    """Transport errors, 5xx retries and HTML answers log nothing containing the key."""
    fake.expect("GET", "/replicas", httpx.ConnectError(f"refused for {API_KEY}"))
    fake.reply("GET", "/replicas", 502, {"error": "bad gateway"})
    fake.expect("GET", "/replicas", httpx.Response(200, text=f"<html>{API_KEY}</html>"))
    caplog.set_level(logging.DEBUG)
    client = TavusClient(
        api_key=API_KEY, base_url=BASE_URL, transport=fake.transport, retry=RetryPolicy.instant()
    )
    with capture_logs() as logs, pytest.raises(ProviderError) as caught:
        async with client:
            await client.list_replicas()
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(logs)
    assert API_KEY not in caplog.text
    assert len(logs) == 5  # three request_failed, two retrying


async def test_aclose_is_idempotent(fake: FakeTavus) -> None:
    """Closing twice is harmless, and ``async with`` closes."""
    client = TavusClient(api_key=API_KEY, base_url=BASE_URL, transport=fake.transport)
    async with client:
        pass
    await client.aclose()
    await client.aclose()
