"""Which pipeline choices a job may make: the operator's allow-lists (Settings), checked at intake
before anything is created at a provider, and the checked choices as a session's pipeline gets
them (`pipelines.config.ServiceChoices`, inside the SessionSpec a WORKER_PIPELINE_HOOK receives).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config import ServiceChoices
from worker.contract import InvalidMessage, SessionJob
from worker.settings import Settings

MAX_LISTED = 8  # allowed names quoted in a reason; the rest are counted


@dataclass(frozen=True)
class AllowedChoices:
    """What a job's `pipeline` object may name, per choice (the worker's defaults included)."""

    tts_voices: frozenset[str] = frozenset()
    llm_models: frozenset[str] = frozenset()
    stt_models: frozenset[str] = frozenset()
    stt_languages: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, s: Settings) -> AllowedChoices:
        """The PIPELINE_ALLOWED_* lists plus the configured voice and models."""
        return cls(
            tts_voices=frozenset({s.cartesia_voice_id, *s.pipeline_allowed_tts_voices}),
            llm_models=frozenset({s.llm_model, *s.pipeline_allowed_llm_models}),
            stt_models=frozenset({s.deepgram_model, *s.pipeline_allowed_stt_models}),
            stt_languages=frozenset(s.pipeline_allowed_stt_languages),
        )


# (the job's field, the AllowedChoices attribute, the setting an operator extends)
_RULES = (
    ("tts_voice", "tts_voices", "PIPELINE_ALLOWED_TTS_VOICES"),
    ("llm_model", "llm_models", "PIPELINE_ALLOWED_LLM_MODELS"),
    ("stt_model", "stt_models", "PIPELINE_ALLOWED_STT_MODELS"),
    ("stt_language", "stt_languages", "PIPELINE_ALLOWED_STT_LANGUAGES"),
)


def disallowed_choice(job: SessionJob, allowed: AllowedChoices) -> str | None:
    """One readable line naming the first choice the operator does not allow, or None.

    Pure: no I/O. Every mode is checked (a job in `auto` may run in either).
    """
    if job.pipeline is None:
        return None
    for field, attribute, setting in _RULES:
        value: str | None = getattr(job.pipeline, field)
        permitted: frozenset[str] = getattr(allowed, attribute)
        if value is None or value in permitted:
            continue
        return (
            f"invalid job: field `pipeline.{field}`: {value!r} is not allowed on this worker "
            f"({_describe(permitted)}; the operator adds names to {setting})"
        )
    return None


def check_choices(job: SessionJob, allowed: AllowedChoices) -> None:
    """Raise `InvalidMessage` (an invalid_job, as a contract violation is) for a choice the
    operator does not allow; call it where a parsed job is taken, before any provider call."""
    reason = disallowed_choice(job, allowed)
    if reason is not None:
        raise InvalidMessage(reason, session_id=job.session_id)


def service_choices(job: SessionJob) -> ServiceChoices:
    """The job's choices as the pipeline takes them (`SessionSpec.choices`)."""
    picks = job.pipeline
    if picks is None:
        return ServiceChoices()
    return ServiceChoices(
        tts_voice=picks.tts_voice,
        llm_model=picks.llm_model,
        stt_model=picks.stt_model,
        stt_language=picks.stt_language,
    )


def _describe(permitted: frozenset[str]) -> str:
    if not permitted:
        return "none is allowed"
    names = sorted(permitted)
    listed = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return f"allowed: {listed}" + (f" and {more} more" if more > 0 else "")
