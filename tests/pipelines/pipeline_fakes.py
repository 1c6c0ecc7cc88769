"""Scripted fakes for pipeline tests: services, a Tavus-like avatar and a Daily-like transport.

No network: the fake transport "joins" in setup() like DailyTransport does and reports it through
the same events; the fake avatar reports to the session's AvatarConnection the way the Tavus
middleware does, and pushes one replica video frame when the replica "joins".
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputImageRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import STTService
from pipecat.transports.base_transport import BaseTransport
from pipecat.utils.time import time_now_iso8601
from pydantic import SecretStr

from pipelines.avatar import AvatarConnection
from pipelines.config import LlmConfig, ProviderConfig, SttConfig, TavusAvatarConfig, TtsConfig
from pipelines.factory import SessionSpec

with warnings.catch_warnings():
    # Pipecat 1.14 subclasses its own deprecated AudioContextTTSService at import time; the
    # warning is attributed to `abc`, so pyproject's "pipecat.*" filter does not catch it.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.services.tts_service import TTSService


class FakeLLM(LLMService):
    """Answers every LLMContextFrame with fixed text and remembers the contexts it saw."""

    def __init__(self, reply: str = "Hello there.") -> None:
        super().__init__(
            settings=LLMSettings(
                model="fake",
                system_instruction=None,
                temperature=None,
                max_tokens=None,
                top_p=None,
                top_k=None,
                frequency_penalty=None,
                presence_penalty=None,
                seed=None,
                filter_incomplete_user_turns=None,
                user_turn_completion_config=None,
            )
        )
        self._reply = reply
        self.seen_messages: list[list[Any]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self.seen_messages.append(list(frame.context.get_messages()))
            await self.push_frame(LLMFullResponseStartFrame())
            for text in self.reply_chunks():
                await self.push_frame(LLMTextFrame(text))
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    def reply_chunks(self) -> list[str]:
        """The reply as the LLM streams it (one chunk here)."""
        return [self._reply]


class FakeTTS(TTSService):
    """Turns every sentence into 100 ms of silence at 16 kHz."""

    def __init__(self) -> None:
        super().__init__(
            settings=TTSSettings(model=None, voice=None, language=None),
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=16000,
            stop_frame_timeout_s=0.1,
        )
        self.spoken: list[str] = []
        self.has_spoken = asyncio.Event()

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        self.spoken.append(text)
        self.has_spoken.set()
        yield TTSAudioRawFrame(
            audio=b"\0\0" * 1600, sample_rate=16000, num_channels=1, context_id=context_id
        )


class FakeSTT(STTService):
    """Hears "hi" in every audio chunk."""

    def __init__(self) -> None:
        super().__init__(settings=STTSettings(model=None, language=None))

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        yield TranscriptionFrame(text="hi", user_id="user", timestamp=time_now_iso8601())


class FakeAvatar(FrameProcessor):
    """Stands in for TavusVideoService: "creates" the conversation in setup(), like Pipecat's.

    ``conversation_id=None`` plays a Tavus that refused (Pipecat then runs on without an
    avatar); ``replica_joins`` pushes one replica video frame once the pipeline starts;
    ``fatal_error`` pushes an error that makes it unusable instead.
    """

    def __init__(
        self,
        connection: AvatarConnection,
        *,
        conversation_id: str | None = "conv-1",
        failure_reason: str | None = None,
        replica_joins: bool = True,
        fatal_error: str | None = None,
    ) -> None:
        super().__init__()
        self._connection = connection
        self._conversation_id = conversation_id
        self._failure_reason = failure_reason
        self._replica_joins = replica_joins
        self._fatal_error = fatal_error
        self.audio_frames = 0

    # Pipecat's FrameProcessor.setup itself narrows BaseObject.setup; we override the former.
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        if self._conversation_id is not None:
            self._connection.record_created(self._conversation_id, "https://tavus.example/r")
        elif self._failure_reason is not None:
            self._connection.record_failed(self._failure_reason, retryable=False)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio_frames += 1  # Tavus consumes TTS audio and sends it to the replica.
            return
        await self.push_frame(frame, direction)
        if not isinstance(frame, StartFrame):
            return
        if self._fatal_error is not None:
            await self.push_error(self._fatal_error, force_treat_as_permanent=True)
        elif self._replica_joins:
            await self.push_frame(OutputImageRawFrame(image=b"\0" * 48, size=(4, 4), format="RGB"))


class FakeTransport(BaseTransport):
    """A Daily-like transport: joins in the input's setup() and reports through Daily's events.

    ``join_error`` makes the join fail the way DailyTransport's does (``on_error``, then the
    pipeline starts anyway); ``join_delay_s`` makes it slow. `user_joins` / `user_leaves` play
    the user.
    """

    EVENTS = (
        "on_joined",
        "on_error",
        "on_first_participant_joined",
        "on_participant_joined",
        "on_participant_left",
    )

    def __init__(self, *, join_error: str | None = None, join_delay_s: float = 0.0) -> None:
        super().__init__(name="FakeTransport")
        for event in self.EVENTS:
            self._register_event_handler(event)
        self._join_error = join_error
        self._join_delay_s = join_delay_s
        self._input = _FakeInput(self)
        self._output = _Passthrough(name="FakeOutput")
        self._first_participant_seen = False

    def input(self) -> FrameProcessor:
        return self._input

    def output(self) -> FrameProcessor:
        return self._output

    async def join(self) -> None:
        await asyncio.sleep(self._join_delay_s)
        if self._join_error is not None:
            await self._call_event_handler("on_error", self._join_error)
        else:
            await self._call_event_handler("on_joined", {"participants": {"local": {"id": "b"}}})

    async def user_joins(self, participant_id: str = "user-1") -> None:
        participant = {"id": participant_id}
        if not self._first_participant_seen:
            self._first_participant_seen = True
            await self._call_event_handler("on_first_participant_joined", participant)
        await self._call_event_handler("on_participant_joined", participant)

    async def user_leaves(self, participant_id: str = "user-1") -> None:
        await self._call_event_handler("on_participant_left", {"id": participant_id}, "leftCall")


class _Passthrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class _FakeInput(_Passthrough):
    def __init__(self, transport: FakeTransport) -> None:
        super().__init__(name="FakeInput")
        self._transport = transport

    # Pipecat's FrameProcessor.setup itself narrows BaseObject.setup; we override the former.
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        await self._transport.join()


@dataclass
class FakeServices:
    """A ServiceFactory of fakes; ``avatar_options`` configure the FakeAvatar it makes."""

    avatar_options: dict[str, Any] = field(default_factory=dict)
    llm: FakeLLM = field(default_factory=FakeLLM)
    tts: FakeTTS = field(default_factory=FakeTTS)
    stt: FakeSTT = field(default_factory=FakeSTT)
    avatar: FakeAvatar | None = None

    def create_stt(self, spec: SessionSpec) -> FrameProcessor:
        return self.stt

    def create_llm(self, spec: SessionSpec) -> FrameProcessor:
        return self.llm

    def create_tts(self, spec: SessionSpec) -> FrameProcessor:
        return self.tts

    def create_avatar(
        self, spec: SessionSpec, http: aiohttp.ClientSession, connection: AvatarConnection
    ) -> FrameProcessor:
        self.avatar = FakeAvatar(connection, **self.avatar_options)
        return self.avatar


def make_spec(**overrides: Any) -> SessionSpec:
    """A SessionSpec with every key set and short timeouts."""
    values: dict[str, Any] = {
        "session_id": "s-1",
        "room_url": "https://example.daily.co/room-1",
        "bot_token": SecretStr("bot-token"),
        "system_prompt": "You are Ada, a patient tutor.",
        "context": "The learner studies algebra.",
        "conversational_context": "Today: linear equations.",
        "tavus": TavusAvatarConfig(
            api_key=SecretStr("tavus-key"), base_url="http://127.0.0.1:9/v2", replica_id="r-1"
        ),
        "providers": ProviderConfig(
            stt=SttConfig(api_key=SecretStr("dg")),
            llm=LlmConfig(api_key=SecretStr("oa")),
            tts=TtsConfig(api_key=SecretStr("ca")),
        ),
        "setup_timeout_s": 5.0,
    }
    values.update(overrides)
    return SessionSpec(**values)
