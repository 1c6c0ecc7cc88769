from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.worker.harness import Harness, harness


@pytest.fixture
async def h(broker_url: str, sim: object) -> AsyncIterator[Harness]:
    """A harness on the real broker and the in-process simulator (workers started by the test)."""
    async with harness(broker_url, sim) as env:  # type: ignore[arg-type]
        yield env
