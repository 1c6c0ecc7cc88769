"""Provider settings for one session's pipeline, as plain values (the worker's Settings fills them).

Each field documents the environment name the worker's Settings reads it from; nothing here
reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from pydantic import SecretStr

# The Cartesia voice Pipecat's own examples use ("British Reading Lady").
DEFAULT_CARTESIA_VOICE_ID = "71a7ad14-091c-4e8e-a314-022ece01c121"


@dataclass(frozen=True)
class SttConfig:
    """Speech-to-text: Deepgram streaming. Env: DEEPGRAM_API_KEY, DEEPGRAM_MODEL."""

    provider: Literal["deepgram"] = "deepgram"
    api_key: SecretStr | None = None
    model: str = "nova-3"

    key_setting: ClassVar[str] = "DEEPGRAM_API_KEY"


@dataclass(frozen=True)
class LlmConfig:
    """An OpenAI-compatible chat LLM. Env: OPENAI_API_KEY, LLM_BASE_URL, LLM_MODEL.

    ``base_url`` None means api.openai.com; any OpenAI-compatible server works.
    """

    provider: Literal["openai"] = "openai"
    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = "gpt-4o-mini"

    key_setting: ClassVar[str] = "OPENAI_API_KEY"


@dataclass(frozen=True)
class TtsConfig:
    """Text-to-speech: Cartesia. Env: CARTESIA_API_KEY, CARTESIA_VOICE_ID, CARTESIA_MODEL."""

    provider: Literal["cartesia"] = "cartesia"
    api_key: SecretStr | None = None
    voice_id: str = DEFAULT_CARTESIA_VOICE_ID
    model: str | None = None

    key_setting: ClassVar[str] = "CARTESIA_API_KEY"


@dataclass(frozen=True)
class ServiceChoices:
    """What one job chose for its pipeline (the job's `pipeline` object, already checked against
    the operator's allow-lists); None keeps the worker's setting."""

    tts_voice: str | None = None
    llm_model: str | None = None
    stt_model: str | None = None
    stt_language: str | None = None


@dataclass(frozen=True)
class ProviderConfig:
    """The speech and language providers of a session's pipeline."""

    stt: SttConfig = field(default_factory=SttConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)

    def with_choices(self, choices: ServiceChoices) -> ProviderConfig:
        """These settings with a job's voice and models in place of the worker's defaults."""
        return replace(
            self,
            stt=replace(self.stt, model=choices.stt_model or self.stt.model),
            llm=replace(self.llm, model=choices.llm_model or self.llm.model),
            tts=replace(self.tts, voice_id=choices.tts_voice or self.tts.voice_id),
        )

    def missing_settings(self) -> list[str]:
        """The environment names of required settings that have no value, in pipeline order."""
        missing = [
            cfg.key_setting
            for cfg in (self.stt, self.llm, self.tts)
            if cfg.api_key is None or not cfg.api_key.get_secret_value()
        ]
        if not self.llm.model:
            missing.append("LLM_MODEL")
        if not self.tts.voice_id:
            missing.append("CARTESIA_VOICE_ID")
        return missing


@dataclass(frozen=True)
class TavusAvatarConfig:
    """The Tavus replica a session renders. Env: TAVUS_API_KEY, TAVUS_BASE_URL.

    ``persona_id`` stays Pipecat's reserved ``pipecat0``: Tavus then speaks with our TTS voice
    (a real persona would replace it with the persona's voice).
    """

    api_key: SecretStr
    base_url: str
    replica_id: str
    persona_id: str = "pipecat0"


@dataclass(frozen=True)
class TavusConversationOptions:
    """What we add to Pipecat's create-conversation call (Pipecat sends only replica and persona).

    The Tavus timers are Tavus's own safety net for when this process dies without ending the
    conversation; ``None`` leaves a property out (Tavus's default applies).
    """

    conversation_name: str | None = None
    max_call_duration_s: int | None = None
    participant_left_timeout_s: int | None = None
    participant_absent_timeout_s: int | None = None

    def properties(self) -> dict[str, int]:
        """The ``properties`` object of ``POST /v2/conversations``, without unset entries."""
        named = {
            "max_call_duration": self.max_call_duration_s,
            "participant_left_timeout": self.participant_left_timeout_s,
            "participant_absent_timeout": self.participant_absent_timeout_s,
        }
        return {name: value for name, value in named.items() if value is not None}
