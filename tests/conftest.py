"""Shared fixtures: a real RabbitMQ (never mocked, never silently skipped) and the simulator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tests import brokers

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
HOW_TO_GET_A_BROKER = (
    "These tests need a real RabbitMQ at {url} and could not reach it ({error}).\n"
    "Start one: `rabbitmq-server -detached` (Debian/Ubuntu: `apt-get install rabbitmq-server`),\n"
    "or `docker run -d -p 5672:5672 rabbitmq:3-management`, or `docker compose up -d rabbitmq`,\n"
    "or point AMQP_URL at one. scripts/test starts a local rabbitmq-server when it is installed."
)

_broker_error: str | None = None
_broker_checked = False
_chosen: brokers.Broker | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Choose the run's broker (tests/brokers.py) when a selected test needs one, and say which."""
    global _chosen
    line = "broker: none (no selected test needs one)"
    if any("broker_url" in getattr(item, "fixturenames", ()) for item in session.items):
        _chosen = brokers.choose()
        brokers.inspect(_chosen)
        os.environ["AMQP_URL"] = _chosen.url  # worker processes the tests start inherit it
        line = _chosen.describe()
    session.config.pluginmanager.getplugin("terminalreporter").write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _chosen is not None:
        _chosen.stop()


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


async def _check_broker(url: str) -> str | None:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), 10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    await connection.close()
    return None


@pytest.fixture
async def broker_url() -> str:
    """The URL of a reachable RabbitMQ; fails (never skips) with instructions when there is none."""
    global _broker_error, _broker_checked
    if _chosen is not None and _chosen.error is not None:
        pytest.fail(f"the test broker could not be used: {_chosen.error}", pytrace=False)
    url = amqp_url()
    if not _broker_checked:
        _broker_error = await _check_broker(url)
        _broker_checked = True
    if _broker_error is not None:
        pytest.fail(HOW_TO_GET_A_BROKER.format(url=url, error=_broker_error), pytrace=False)
    return url


@pytest.fixture
async def sim() -> AsyncIterator[object]:
    """The Tavus + Daily simulator on an ephemeral port, Daily rate limits off for speed."""
    from tavus.sim import Simulator

    simulator = Simulator(
        tavus_api_keys={"test-tavus-key-0123456789"},
        daily_api_keys={"test-daily-key-0123456789"},
        daily_rate_limits=False,
        replica_join_delay_s=0.05,
        sweep_interval_s=0.05,
    )
    async with simulator.running(host="127.0.0.1", port=0) as running:
        yield running
