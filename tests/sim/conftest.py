"""Fixtures for the simulator tests: a running simulator on an ephemeral port with a manual
clock, and plain httpx clients for Tavus, Daily and the /_sim control surface."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tavus.sim import ManualClock, Simulator

TAVUS_KEY = "test-tavus-key"
DAILY_KEY = "test-daily-key"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    simulator = Simulator(tavus_api_keys={TAVUS_KEY}, daily_api_keys={DAILY_KEY}, clock=clock)
    async with simulator.running(host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def tavus(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"x-api-key": TAVUS_KEY}
    async with httpx.AsyncClient(base_url=sim.tavus_base_url, headers=headers) as client:
        yield client


@pytest.fixture
async def daily(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {DAILY_KEY}"}
    async with httpx.AsyncClient(base_url=sim.daily_base_url, headers=headers) as client:
        yield client


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        yield client
