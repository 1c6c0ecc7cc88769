"""The session process's warm-up builds the first session's turn analyzers (and only its)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import PipelineError
from pipelines.factory import SessionSpec, TurnAnalyzers
from tests.worker.fake_child import Factories, factories, make_spec
from worker.pool import Failed, ProcessPool, spec_to_dict
from worker.pool import child as child_module
from worker.pool.child import ChildMain, MessageOut
from worker.pool.protocol import Start

REPO = str(Path(__file__).resolve().parents[2])
TEST_TIMEOUT_S = 60.0
ONNX_CREATED = "test_pool_child: onnx InferenceSession created"
LIMITS = {
    "max_duration_s": 30.0,
    "setup_timeout_s": 5.0,
    "avatar_timeout_s": 5.0,
    "participant_left_timeout_s": 0.0,
}


def counting_onnx(spec: SessionSpec) -> Factories:
    """Child hook: the fake services, and a stderr line for each ONNX session created from now on
    (the hook runs when the start command arrives, just before the pipeline is built)."""
    import onnxruntime

    original = onnxruntime.InferenceSession

    def counted(*args: Any, **kwargs: Any) -> Any:
        print(ONNX_CREATED, file=sys.stderr, flush=True)
        return original(*args, **kwargs)

    onnxruntime.InferenceSession = counted
    return factories(spec)


async def test_a_session_in_a_warm_child_creates_no_onnx_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Silero VAD and smart-turn were loaded during warm-up: from start to ready, no model loads."""
    caplog.set_level(logging.DEBUG, logger="worker.child")
    pool = ProcessPool(
        size=0,
        child_args=["--factories", "tests.worker.test_pool_child:counting_onnx"],
        env={**os.environ, "PYTHONPATH": REPO},
        heartbeat_interval_s=0.1,
        heartbeat_timeout_s=3.0,
        warm_timeout_s=30.0,
    )
    try:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await pool.start()
            child = await pool.acquire(timeout_s=TEST_TIMEOUT_S)
            await child.start_session(make_spec(), **LIMITS)
            assert await child.wait_ready() == "conv-1"
            child.stop("test")
            await child.wait_outcome()
            assert await child.wait_exited(10.0) and child.returncode == 0
    finally:
        await pool.aclose()
    lines = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name == "worker.child"]
    assert any(line.startswith("child.warm ") for line in lines), "the child's log was forwarded"
    assert not [line for line in lines if ONNX_CREATED in line]


async def test_only_the_first_session_in_a_child_gets_the_warm_up_analyzers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child runs one session; should a second ever start, it builds its own analyzers rather
    than inherit the first session's VAD and turn state."""
    seen: list[TurnAnalyzers | None] = []

    async def build_pipeline(spec: SessionSpec, **kwargs: Any) -> Any:
        seen.append(kwargs["analyzers"])
        raise PipelineError("stop after the build", code="test_stop")

    monkeypatch.setattr(child_module, "build_pipeline", build_pipeline)
    warm_up = TurnAnalyzers.create()
    main = ChildMain(MessageOut(io.BytesIO()), heartbeat_s=1.0, hook=factories, analyzers=warm_up)
    start = Start(spec_to_dict(make_spec()), **LIMITS)
    outcomes = [await main._run_session(start, asyncio.Event()) for _ in range(2)]
    assert all(isinstance(o, Failed) and o.code == "test_stop" for o in outcomes)
    assert seen == [warm_up, None]
