"""Fixtures for the Tavus client tests: a scripted fake, a client wired to it, and a sleep that
records the backoff instead of waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_tavus import FakeTavus

from tavus._http import RetryPolicy
from tavus.client import TavusClient

API_KEY = "tvs-secret-0123456789abcdef"
BASE_URL = "https://tavus.test/v2"


class RecordedSleep:
    """An async sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)


@pytest.fixture
def fake() -> FakeTavus:
    return FakeTavus()


@pytest.fixture
def sleeps() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def retry(sleeps: RecordedSleep) -> RetryPolicy:
    return RetryPolicy(
        attempts=3, base_delay_s=0.5, max_delay_s=8.0, sleep=sleeps, jitter=lambda: 1.0
    )


@pytest.fixture
async def client(fake: FakeTavus, retry: RetryPolicy) -> AsyncIterator[TavusClient]:
    async with TavusClient(
        api_key=API_KEY, base_url=BASE_URL, transport=fake.transport, retry=retry
    ) as tavus:
        yield tavus
    fake.assert_done()
