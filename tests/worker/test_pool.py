"""The session process pool: warm children, sessions in real subprocesses, crashes and hangs isolated."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from pipelines.config import LlmConfig, ProviderConfig, SttConfig, TavusAvatarConfig, TtsConfig
from pipelines.factory import SessionSpec
from tests.worker.fake_child import make_spec
from worker.pool import (
    ChildFailed,
    ChildProcess,
    Ended,
    Failed,
    PoolUnavailable,
    ProcessPool,
    spec_from_dict,
    spec_to_dict,
)
from worker.pool.protocol import ProtocolError, decode

REPO = str(Path(__file__).resolve().parents[2])
TEST_TIMEOUT_S = 60.0
# Heartbeats every 0.1s; 3s of silence is a hang (a loaded CI box can stall a healthy child ~1s).
FAST = {"heartbeat_interval_s": 0.1, "heartbeat_timeout_s": 3.0, "warm_timeout_s": 30.0}
LIMITS = {
    "max_duration_s": 30.0,
    "setup_timeout_s": 5.0,
    "avatar_timeout_s": 5.0,
    "participant_left_timeout_s": 0.0,
}

MakePool = Callable[..., ProcessPool]


@pytest.fixture
async def make_pool() -> AsyncIterator[MakePool]:
    """Pools of children running fake services (hook ``fake_child:<hook>``); closed after the test."""
    pools: list[ProcessPool] = []

    def make(hook: str = "factories", **options: Any) -> ProcessPool:
        settings: dict[str, Any] = {
            **FAST,
            "child_args": ["--factories", f"tests.worker.fake_child:{hook}"],
            "env": {**os.environ, "PYTHONPATH": REPO},
        }
        settings.update(options)
        pools.append(ProcessPool(**settings))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.aclose()


async def warm_child(
    make_pool: MakePool, hook: str = "factories"
) -> tuple[ProcessPool, ChildProcess]:
    """One child, warm (a cold start: no refill spawns competing for the CPU)."""
    pool = make_pool(hook, size=0)
    await pool.start()
    return pool, await pool.acquire(timeout_s=TEST_TIMEOUT_S)


async def start(child: ChildProcess, spec: SessionSpec | None = None, **limits: float) -> None:
    await child.start_session(spec or make_spec(), **{**LIMITS, **limits})


async def test_pool_warms_size_children_and_hands_out_a_warm_one_then_refills(
    make_pool: MakePool,
) -> None:
    """start() warms `size` children; acquire returns a warm one (not a cold start) and the pool refills."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool = make_pool(size=2)
        await pool.start()
        assert await pool.wait_warm(timeout_s=TEST_TIMEOUT_S)
        assert (pool.warm_count, pool.busy_count) == (2, 0)
        child = await pool.acquire()
        assert not child.cold_start and child.is_alive and child.warm_s > 0
        assert (pool.warm_count, pool.busy_count) == (1, 1)
        assert pool.starting_count == 1
        assert await pool.wait_warm(timeout_s=TEST_TIMEOUT_S)
        assert pool.spawned_total == 3 and pool.last_spawn_s is not None
        await pool.aclose()
        await pool.aclose()
        assert not child.is_alive and pool.warm_count == pool.busy_count == 0
        with pytest.raises(PoolUnavailable) as closed:
            await pool.acquire()
        assert closed.value.code == "worker_pool_closed"


async def test_acquire_from_an_empty_pool_spawns_a_cold_child(make_pool: MakePool) -> None:
    """With nothing warm, acquire spawns a child now and returns it warm, marked cold_start."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool = make_pool(size=0)
        await pool.start()
        child = await pool.acquire()
        assert child.cold_start and child.is_alive and child.warm_s > 0
        assert (pool.warm_count, pool.busy_count, pool.spawned_total) == (0, 1, 1)
        await child.kill()
        await child.kill()
        assert not child.is_alive and child.returncode == -signal.SIGKILL


async def test_a_child_not_warm_in_time_is_killed_and_replaced(make_pool: MakePool) -> None:
    """A child missing warm_timeout_s is killed (counted) and replaced; a cold acquire then fails."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool = make_pool(size=1, warm_timeout_s=0.05)
        await pool.start()
        with pytest.raises(PoolUnavailable) as slow:
            await pool.acquire()
        assert slow.value.code == "worker_process_start_failed" and slow.value.retryable
        while pool.warm_timeouts_total < 3:  # noqa: ASYNC110 (a counter, not an event)
            await asyncio.sleep(0.05)
        assert pool.warm_count == 0 and pool.spawned_total >= 3


async def test_a_session_gets_ready_then_ends_as_stopped_after_stop(make_pool: MakePool) -> None:
    """A session with fake services reports ready (the conversation id), and stop() ends it as stopped."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        _, child = await warm_child(make_pool)
        await start(child)
        assert await child.wait_ready() == "conv-1"
        child.stop("test")
        outcome = await child.wait_outcome()
        assert isinstance(outcome, Ended)
        assert (outcome.reason, outcome.conversation_id) == ("stopped", "conv-1")
        assert await child.wait_exited(10.0) and child.returncode == 0


async def test_max_duration_ends_the_session_as_max_duration(make_pool: MakePool) -> None:
    """A session still running at max_duration_s ends with reason max_duration."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        _, child = await warm_child(make_pool)
        await start(child, max_duration_s=0.5)
        outcome = await child.wait_outcome()
        assert isinstance(outcome, Ended) and outcome.reason == "max_duration"
        assert 0.5 <= outcome.duration_s < 5


async def test_a_child_killed_mid_session_fails_as_crashed_and_another_session_carries_on(
    make_pool: MakePool,
) -> None:
    """SIGKILL on one session's process yields worker_process_crashed; the other session ends normally."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool = make_pool(size=0)
        await pool.start()
        doomed, survivor = await asyncio.gather(pool.acquire(), pool.acquire())
        await start(doomed, make_spec(session_id="doomed"))
        await start(survivor, make_spec(session_id="survivor"), max_duration_s=2.0)
        await asyncio.gather(doomed.wait_ready(), survivor.wait_ready())
        os.kill(doomed.pid, signal.SIGKILL)
        crashed = await doomed.wait_outcome()
        assert isinstance(crashed, Failed) and crashed.code == "worker_process_crashed"
        assert crashed.retryable and "SIGKILL" in crashed.message
        assert survivor.is_alive
        ended = await survivor.wait_outcome()
        assert isinstance(ended, Ended) and ended.reason == "max_duration"
        assert pool.crashed_total == 1 and pool.hung_total == 0


async def test_a_child_that_dies_before_ready_makes_wait_ready_raise(make_pool: MakePool) -> None:
    """A process that exits before ready raises ChildFailed(worker_process_crashed) with its exit code."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        _, child = await warm_child(make_pool, "crashing")
        await start(child)
        with pytest.raises(ChildFailed) as failed:
            await child.wait_ready()
        assert failed.value.code == "worker_process_crashed" and failed.value.retryable
        assert "exit code 3" in failed.value.message


async def test_a_child_whose_loop_hangs_is_killed_as_hung(make_pool: MakePool) -> None:
    """A child whose event loop blocks stops heartbeating, is SIGKILLed and fails as worker_process_hung."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool, child = await warm_child(make_pool, "hanging")
        await start(child)
        outcome = await child.wait_outcome()
        assert isinstance(outcome, Failed) and outcome.code == "worker_process_hung"
        assert outcome.retryable and "3s" in outcome.message
        assert await child.wait_exited(10.0) and child.returncode == -signal.SIGKILL
        assert pool.hung_total == 1 and pool.crashed_total == 0


async def test_eof_on_stdin_ends_the_session(make_pool: MakePool) -> None:
    """When the child's stdin closes (the parent went away), its session ends as stopped and it exits."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        _, child = await warm_child(make_pool)
        await start(child)
        assert await child.wait_ready() == "conv-1"
        child.close_stdin()
        outcome = await child.wait_outcome()
        assert isinstance(outcome, Ended) and outcome.reason == "stopped"
        assert await child.wait_exited(10.0) and child.returncode == 0


SECRETS = {
    "tavus": "tvs-secret-0123456789abcdef",
    "deepgram": "dg-secret-0123456789abcdef",
    "openai": "sk-secret-0123456789abcdef",
    "cartesia": "ca-secret-0123456789abcdef",
    "bot_token": "bot-token-secret-0123456789",
}


def secret_spec() -> SessionSpec:
    return make_spec(
        bot_token=SecretStr(SECRETS["bot_token"]),
        tavus=TavusAvatarConfig(
            api_key=SecretStr(SECRETS["tavus"]), base_url="http://127.0.0.1:9/v2", replica_id="r-1"
        ),
        providers=ProviderConfig(
            stt=SttConfig(api_key=SecretStr(SECRETS["deepgram"])),
            llm=LlmConfig(api_key=SecretStr(SECRETS["openai"])),
            tts=TtsConfig(api_key=SecretStr(SECRETS["cartesia"])),
        ),
    )


async def test_secrets_never_appear_in_forwarded_logs_argv_or_env(
    make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    """Spec secrets a child leaks to stderr reach our log as ***; they are never in its argv or env."""
    caplog.set_level(logging.DEBUG, logger="worker.child")
    async with asyncio.timeout(TEST_TIMEOUT_S):
        _, child = await warm_child(make_pool, "leaky")
        await start(child, secret_spec())
        await child.wait_ready()
        process = psutil.Process(child.pid)
        exposed = " ".join([*process.cmdline(), *process.environ().values()])
        child.stop("test")
        await child.wait_outcome()
        await child.wait_exited(10.0)
    lines = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name == "worker.child"]
    leaks = [line for line in lines if "key=" in line or "using key" in line]
    assert len(leaks) >= 3 * 4, "the leaky hook's lines were forwarded"
    assert all("***" in line for line in leaks)
    for secret in SECRETS.values():
        assert not any(secret in line for line in lines)
        assert secret not in exposed


def test_a_spec_survives_the_json_round_trip() -> None:
    """spec_to_dict → JSON → spec_from_dict gives back an equal SessionSpec, secrets included."""
    spec = secret_spec()
    again = spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    assert again == spec
    assert again.tavus.api_key.get_secret_value() == SECRETS["tavus"]
    assert isinstance(again.bot_token, SecretStr)


async def test_aclose_stops_a_running_session_and_every_child(make_pool: MakePool) -> None:
    """aclose() ends a running session as stopped, stops the warm children, and acquire then refuses."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool, child = await warm_child(make_pool)
        await start(child)
        await child.wait_ready()
        await pool.aclose()
        outcome = await child.wait_outcome()
        assert isinstance(outcome, Ended) and outcome.reason == "stopped"
        assert not child.is_alive and pool.warm_count == pool.busy_count == pool.starting_count == 0


def test_a_malformed_start_line_is_refused_without_echoing_its_secrets() -> None:
    """decode() rejects a bad command and its error message never repeats the line's content."""
    secret = SECRETS["tavus"]
    bad_lines = [
        json.dumps({"type": "start", "spec": {"k": secret}, "bogus": secret}),
        f'{{"type": "start", "spec": "{secret}"',
        json.dumps([secret]),
    ]
    for line in bad_lines:
        with pytest.raises(ProtocolError) as refused:
            decode(line)
        assert secret not in str(refused.value)
