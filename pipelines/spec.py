"""What one session's pipeline is built from: the resolved job, as values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from pipelines.config import (
    ProviderConfig,
    ServiceChoices,
    TavusAvatarConfig,
    TavusConversationOptions,
)
from tavus.languages import language_code, language_name


@dataclass(frozen=True)
class SessionSpec:
    """Everything one session's pipeline is built from (values; the worker resolves them).

    ``system_prompt`` and ``context`` come from the resolved persona, ``conversational_context``
    from the job. ``bot_token`` is the bot's meeting token for ``room_url`` (None for a public
    room).
    """

    session_id: str
    room_url: str
    bot_token: SecretStr | None
    system_prompt: str
    tavus: TavusAvatarConfig
    providers: ProviderConfig = field(default_factory=ProviderConfig)
    context: str | None = None
    conversational_context: str | None = None
    custom_greeting: str | None = None
    language: str | None = None
    idle_timeout_s: float | None = 300.0
    setup_timeout_s: float = 30.0
    tavus_http_timeout_s: float = 15.0
    bot_name: str = "Avatar"
    conversation: TavusConversationOptions = field(default_factory=TavusConversationOptions)
    # The job's own pipeline choices and its opaque metadata, for the services and for a
    # WORKER_PIPELINE_HOOK (which receives this spec).
    choices: ServiceChoices = field(default_factory=ServiceChoices)
    metadata: dict[str, Any] = field(default_factory=dict)

    def resolved_providers(self) -> ProviderConfig:
        """The worker's provider settings with this job's choices applied."""
        return self.providers.with_choices(self.choices)

    def stt_language(self) -> str | None:
        """The STT language: the job's `stt_language` choice, else the one its `language` implies."""
        return self.choices.stt_language or language_codes(self.language)[0]

    def system_message(self) -> str:
        """The LLM's system message: persona prompt, persona context, this session's context."""
        parts = [self.system_prompt.strip()]
        if self.context:
            parts.append(f"Background:\n{self.context.strip()}")
        if self.conversational_context:
            parts.append(f"About this conversation:\n{self.conversational_context.strip()}")
        if self.language and self.language.lower() != "multilingual":
            parts.append(f"Always answer in {self.language}.")
        parts.append("Your replies are spoken aloud: no markdown, lists or emoji.")
        return "\n\n".join(parts)


def language_codes(language: str | None) -> tuple[str | None, str | None]:
    """The (Deepgram, Cartesia) language codes for a job's ``language`` (a Tavus language name
    or its ISO code, `tavus.languages`); None keeps the default. multilingual: Deepgram detects
    the language, Cartesia keeps its default (it has no "any")."""
    if not language:
        return None, None
    name = language_name(language)
    if name is None:  # not from a job (the contract refuses unknown languages): as given
        code = language.strip().lower()
        return code, code
    code = language_code(name)
    return code, None if code == "multi" else code
