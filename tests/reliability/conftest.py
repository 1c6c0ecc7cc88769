"""Fixtures for the reliability suite: the worker harness on the real broker and the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.reliability.env import ReliabilityHarness


@pytest.fixture
async def h(broker_url: str, sim: object) -> AsyncIterator[ReliabilityHarness]:
    """A harness on the real broker and the in-process simulator (workers started by the test)."""
    env = ReliabilityHarness(broker_url, sim)  # type: ignore[arg-type]
    await env.start()
    try:
        yield env
    finally:
        await env.aclose()
