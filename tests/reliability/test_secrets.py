"""Secrets never leak: with recognisable fake keys (Tavus, Daily, a wrong Tavus key, and the
broker password of a RabbitMQ user made for the test), the main scenarios — success, provider 5xx
with retries, dead-letter, auth failure, a reaped session of a killed worker — leave no key in any
log line (in-process JSON logs and a worker process's stderr), event, dead-letter message, the
status/metrics pages, or exception text.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import signal
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import structlog
from pydantic import SecretStr

from tavus.sim import Simulator
from tests.reliability.env import ReliabilityHarness, rabbitmqctl
from tests.worker.harness import job
from worker.logs import configure_logging

pytestmark = pytest.mark.broker

TAVUS_SECRET = "tvs-SECRET-tavus-5f1c9a7e3b"
DAILY_SECRET = "dly-SECRET-daily-8e2d4c6a0f"
WRONG_SECRET = "tvs-WRONG-tavus-1a2b3c4d5e"
AMQP_SECRET = "amqp-SECRET-pw-7d9e1f3a5c"
SECRETS = (TAVUS_SECRET, DAILY_SECRET, WRONG_SECRET, AMQP_SECRET)


def leaks(text: str) -> list[str]:
    """The secrets found in `text` (also URL-quoted forms)."""
    return [s for s in SECRETS if s in text or quote(s) in text]


@pytest.fixture
async def broker_user(broker_url: str) -> AsyncIterator[str]:
    """A RabbitMQ user with a recognisable password, for the duration of the test: its URL (the
    harness's own URL where rabbitmqctl cannot make one: the other keys are still checked)."""
    if shutil.which("rabbitmqctl") is None:
        yield broker_url
        return
    user = f"rel-{uuid.uuid4().hex[:8]}"
    await rabbitmqctl("add_user", user, AMQP_SECRET)
    await rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    parts = urlsplit(broker_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield urlunsplit(parts._replace(netloc=f"{user}:{AMQP_SECRET}@{host}"))
    finally:
        await rabbitmqctl("delete_user", user)


@pytest.fixture
async def secret_sim() -> AsyncIterator[Simulator]:
    """The simulator accepting only the test's fake keys."""
    simulator = Simulator(
        tavus_api_keys={TAVUS_SECRET},
        daily_api_keys={DAILY_SECRET},
        daily_rate_limits=False,
        replica_join_delay_s=0.05,
        sweep_interval_s=0.05,
    )
    async with simulator.running(host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def hs(
    broker_url: str, secret_sim: Simulator, broker_user: str
) -> AsyncIterator[ReliabilityHarness]:
    """A harness whose workers use the fake keys and the password user (the harness's own
    producer and event collector keep the default user)."""
    env = ReliabilityHarness(broker_url, secret_sim)
    await env.start()
    env.worker_url = broker_user
    try:
        yield env
    finally:
        await env.aclose()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The worker's real logging set-up (JSON, DEBUG, its redactor) writing into a buffer."""
    out = io.StringIO()
    secrets = [TAVUS_SECRET, DAILY_SECRET, WRONG_SECRET, AMQP_SECRET]
    configure_logging(level="DEBUG", fmt="json", secrets=secrets, stream=out)
    yield out
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def secret_settings(h: ReliabilityHarness, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "tavus_api_key": SecretStr(TAVUS_SECRET),
        "daily_api_key": SecretStr(DAILY_SECRET),
        "amqp_url": SecretStr(h.worker_url),
        "worker_status_host": "127.0.0.1",
        "worker_status_port": 0,
    }
    values.update(overrides)
    return values


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode(errors="replace"))


async def run_scenarios(h: ReliabilityHarness) -> list[str]:
    """Success, 5xx retries, exhausted retries (DLQ), invalid job (DLQ); the texts a user sees."""
    ok, flaky, doomed = job(), job(), job()
    await h.publish(ok)
    await h.wait_for(ok["session_id"], "ready")
    await h.stop_session(ok["session_id"])
    await h.wait_for(ok["session_id"], "ended")
    h.sim.faults.fail_next("POST /v2/conversations", n=2, status=503)
    await h.publish(flaky)
    await h.wait_for(flaky["session_id"], "ready", timeout_s=20)
    await h.stop_session(flaky["session_id"])
    await h.wait_for(flaky["session_id"], "ended")
    h.sim.faults.fail_next("POST /v2/conversations", n=100, status=500)
    await h.publish(doomed)
    failed = await h.wait_for(doomed["session_id"], "failed", timeout_s=30)
    assert "gave up" in failed["error"]["message"]
    h.sim.faults.clear()
    await h.publish(b'{"session_id": "bad id!"}')
    dead = await h.dead_letters(2, timeout_s=15)
    assert len(dead) == 2
    return [repr(d.headers) + d.body.decode(errors="replace") for d in dead]


async def test_no_secret_in_logs_events_dead_letters_or_pages_of_an_in_process_worker(
    hs: ReliabilityHarness, log_stream: io.StringIO
) -> None:
    """In-process workers with fake keys and a broker password: success, retries, dead letters,
    a rejected (wrong) key and a reaped session leave no key anywhere a person could read."""
    app = await hs.start_worker(
        **secret_settings(
            hs,
            worker_reaper_interval_s=0.3,
            worker_reaper_grace_s=0.5,
            worker_session_lease_s=2.0,
            worker_adopt_sessions=False,  # the reaper's worker_lost path, with its log lines
        )
    )
    texts = await run_scenarios(hs)
    if app.status is not None:
        base = f"http://127.0.0.1:{app.status.port}"
        texts += [
            await asyncio.to_thread(fetch, f"{base}/{page}") for page in ("status", "metrics")
        ]
    await hs.stop_worker(app)

    wrong = await hs.start_worker(**secret_settings(hs, tavus_api_key=SecretStr(WRONG_SECRET)))
    body = job()
    await hs.publish(body)
    failed = await hs.wait_for(body["session_id"], "failed")
    assert failed["error"]["code"] == "tavus_auth"
    await hs.stop_worker(wrong)

    # a worker process dies with a live session; an in-process reaper finishes it
    victim = await hs.spawn_capturing(
        **secret_settings(hs, log_level="DEBUG", worker_reaper_interval_s=0)
    )
    lost = job()
    await hs.publish(lost)
    await hs.wait_for(lost["session_id"], "ready")
    await asyncio.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    await hs.start_worker(
        **secret_settings(
            hs,
            worker_reaper_interval_s=0.3,
            worker_reaper_grace_s=0.5,
            worker_session_lease_s=2.0,
            worker_adopt_sessions=False,  # the reaper's worker_lost path, with its log lines
        )
    )
    ended = await hs.wait_for(lost["session_id"], "ended", timeout_s=20)
    assert ended["reason"] == "worker_lost"

    logged = log_stream.getvalue()
    assert "session.ready" in logged and "reaper.orphan" in logged  # the capture works
    assert leaks(logged) == [], "a secret in the worker's log lines"
    assert leaks(json.dumps(hs.events)) == [], "a secret in an event"
    assert leaks("\n".join(texts)) == [], "a secret in the DLQ or the status pages"
    stderr = "".join(line for lines in hs.stderr_lines.values() for line in lines)
    assert "worker.started" in stderr
    assert leaks(stderr) == [], "a secret on a worker process's stderr"


async def test_no_secret_on_the_stderr_of_a_worker_process_with_a_wrong_key(
    hs: ReliabilityHarness,
) -> None:
    """A worker process (DEBUG logs) whose Tavus key is rejected and whose provider fails: its
    stderr, the `failed` event and the broker lines name the problem, never a key or password."""
    await hs.spawn_capturing(
        **secret_settings(hs, tavus_api_key=SecretStr(WRONG_SECRET), log_level="DEBUG")
    )
    body = job()
    await hs.publish(body)
    failed = await hs.wait_for(body["session_id"], "failed", timeout_s=20)
    assert failed["error"]["code"] == "tavus_auth" and "TAVUS_API_KEY" in failed["error"]["message"]
    await hs.publish(b"\xff not json")
    [dead] = await hs.dead_letters(1)
    await asyncio.sleep(0.5)
    stderr = "".join(line for lines in hs.stderr_lines.values() for line in lines)
    assert "tavus_auth" in stderr or "401" in stderr
    assert leaks(stderr) == [], "a secret on the worker process's stderr"
    assert leaks(json.dumps(hs.events) + repr(dead.headers)) == []
