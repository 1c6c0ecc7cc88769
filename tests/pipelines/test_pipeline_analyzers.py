"""Turn analyzers built ahead of the pipeline (a warm session process does so while it waits)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import onnxruntime
import pytest
from pipecat.frames.frames import LLMRunFrame
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.user_start import (
    TranscriptionUserTurnStartStrategy,
    VADUserTurnStartStrategy,
)
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
from pipeline_fakes import FakeServices, FakeTransport, make_spec

from pipelines.factory import BuiltPipeline, TurnAnalyzers, build_pipeline


@pytest.fixture
def onnx_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The model path of every onnxruntime InferenceSession created while the test runs."""
    created: list[str] = []
    original = onnxruntime.InferenceSession

    def counted(path: str, *args: Any, **kwargs: Any) -> Any:
        created.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counted)
    yield created


async def build(analyzers: TurnAnalyzers | None = None) -> BuiltPipeline:
    return await build_pipeline(
        make_spec(),
        services=FakeServices(),
        transport_factory=lambda _: FakeTransport(),
        analyzers=analyzers,
    )


def user_aggregator(built: BuiltPipeline) -> LLMUserAggregator:
    found = [p for p in built.pipeline.processors if isinstance(p, LLMUserAggregator)]
    assert len(found) == 1
    return found[0]


async def test_prebuilt_analyzers_spare_the_pipeline_both_onnx_sessions(
    onnx_sessions: list[str],
) -> None:
    """Without analyzers a build loads Silero and smart-turn; with prebuilt ones it loads neither."""
    cold = await build()
    await cold.aclose()
    assert sorted(path.rsplit("/", 1)[-1] for path in onnx_sessions) == [
        "silero_vad.onnx",
        "smart-turn-v3.2-cpu.onnx",
    ]
    analyzers = TurnAnalyzers.create()
    onnx_sessions.clear()
    built = await build(analyzers)
    try:
        assert onnx_sessions == []
        assert analyzers.vad.sample_rate == analyzers.turn.sample_rate == 0
        await run_test(built.pipeline, frames_to_send=[LLMRunFrame(), SleepFrame(0.2)])
    finally:
        await built.aclose()
    # The running pipeline set them up: these are the analyzers it listens with.
    assert analyzers.vad.sample_rate == analyzers.turn.sample_rate == 16000


async def test_prebuilt_analyzers_keep_pipecats_default_turn_strategies() -> None:
    """Same strategies as a pipeline building its own, and not marked user-chosen (so a service
    such as Deepgram Flux can still recommend its own, as it can without prebuilt analyzers)."""
    analyzers = TurnAnalyzers.create()
    built = await build(analyzers)
    try:
        user = user_aggregator(built)
        strategies = user._user_turn_controller.user_turn_strategies
        assert [type(s) for s in strategies.start or []] == [
            VADUserTurnStartStrategy,
            TranscriptionUserTurnStartStrategy,
        ]
        [stop] = strategies.stop or []
        assert isinstance(stop, TurnAnalyzerUserTurnStopStrategy)
        assert stop._turn_analyzer is analyzers.turn
        assert user._params.vad_analyzer is analyzers.vad
        assert user._params.user_turn_strategies is None
    finally:
        await built.aclose()


async def test_a_set_of_analyzers_serves_one_pipeline_only() -> None:
    """Analyzer state is per session: a second pipeline may not take a set another already has."""
    analyzers = TurnAnalyzers.create()
    first = await build(analyzers)
    await first.aclose()
    with pytest.raises(ValueError, match="already served a pipeline"):
        await build(analyzers)
