"""The pipeline built for a session: topology, LLM context, greeting wiring, config checks."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import pytest
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
)
from pipecat.tests.utils import SleepFrame, run_test
from pipeline_fakes import FakeAvatar, FakeServices, FakeTransport, make_spec
from pydantic import SecretStr

from pipelines.avatar import point_tavus_at
from pipelines.config import LlmConfig, ProviderConfig
from pipelines.errors import ProviderConfigError
from pipelines.factory import build_pipeline


async def test_processors_are_in_tavus_over_daily_order() -> None:
    """The pipeline is input → stt → user agg → llm → tts → avatar → output → assistant agg."""
    services, transport = FakeServices(), FakeTransport()
    built = await build_pipeline(
        make_spec(), services=services, transport_factory=lambda _: transport
    )
    try:
        inner = built.pipeline.processors[1:-1]  # without the pipeline's own source and sink
        assert inner[0] is transport.input()
        assert inner[1] is services.stt
        assert isinstance(inner[2], LLMUserAggregator)
        assert inner[3] is services.llm
        assert inner[4] is services.tts
        assert inner[5] is services.avatar
        assert isinstance(services.avatar, FakeAvatar)
        assert inner[6] is transport.output()
        assert isinstance(inner[7], LLMAssistantAggregator)
        assert len(inner) == 8
        assert isinstance(built.worker, PipelineWorker)
    finally:
        await built.aclose()


async def test_llm_context_holds_persona_prompt_and_contexts() -> None:
    """The LLM's system message carries the persona prompt, persona context and session context."""
    spec = make_spec(language="spanish")
    built = await build_pipeline(
        spec, services=FakeServices(), transport_factory=lambda _: FakeTransport()
    )
    try:
        messages: list[Any] = built.context.get_messages()
        assert len(messages) == 1
        assert messages[0]["role"] == "system"
        content = str(messages[0]["content"])
        assert "You are Ada, a patient tutor." in content
        assert "The learner studies algebra." in content
        assert "Today: linear equations." in content
        assert "Always answer in spanish." in content
    finally:
        await built.aclose()


async def test_pipeline_runs_offline_with_fakes() -> None:
    """An LLM run answers from the persona context, is spoken, and the avatar gets the audio."""
    services = FakeServices()
    built = await build_pipeline(
        make_spec(), services=services, transport_factory=lambda _: FakeTransport()
    )
    try:
        await run_test(built.pipeline, frames_to_send=[LLMRunFrame(), SleepFrame(0.5)])
    finally:
        await built.aclose()
    assert services.llm.seen_messages[0][0]["content"].startswith("You are Ada")
    assert services.tts.spoken == ["Hello there."]
    assert services.avatar is not None and services.avatar.audio_frames >= 1
    assert built.context.get_messages()[-1] == {"role": "assistant", "content": "Hello there."}


async def test_default_services_need_every_provider_key() -> None:
    """Building with the default services names each missing provider key by its env name."""
    spec = make_spec(providers=ProviderConfig(llm=LlmConfig(api_key=SecretStr("oa"))))
    with pytest.raises(ProviderConfigError) as caught:
        await build_pipeline(spec, transport_factory=lambda _: FakeTransport())
    assert caught.value.code == "provider_config_missing"
    assert "DEEPGRAM_API_KEY" in caught.value.message
    assert "CARTESIA_API_KEY" in caught.value.message
    assert "OPENAI_API_KEY" not in caught.value.message


def test_missing_settings_lists_env_names() -> None:
    """An empty ProviderConfig reports all three provider keys, in pipeline order."""
    assert ProviderConfig().missing_settings() == [
        "DEEPGRAM_API_KEY",
        "OPENAI_API_KEY",
        "CARTESIA_API_KEY",
    ]


async def test_default_factories_build_the_real_services_offline() -> None:
    """The defaults build DailyTransport, Deepgram, OpenAI, Cartesia and Tavus, aimed at our URL."""
    with warnings.catch_warnings():
        # Pipecat 1.14's Cartesia module subclasses its own deprecated TTS base at import time.
        warnings.simplefilter("ignore", DeprecationWarning)
        from pipecat.services.cartesia.tts import CartesiaTTSService
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.tavus.video import TavusVideoService
    from pipecat.transports.daily.transport import DailyTransport
    from pipecat.transports.tavus.transport import TavusApi

    spec = make_spec(tavus=replace(make_spec().tavus, base_url="http://127.0.0.1:9/v2/"))
    built = await build_pipeline(spec)
    try:
        kinds = [type(p) for p in built.pipeline.processors[1:-1]]
        assert isinstance(built.transport, DailyTransport)
        assert kinds[1:2] == [DeepgramSTTService]
        assert kinds[3:6] == [OpenAILLMService, CartesiaTTSService, TavusVideoService]
        assert TavusApi.BASE_URL == "http://127.0.0.1:9/v2"
    finally:
        await built.aclose()
        point_tavus_at("https://tavusapi.com/v2")
