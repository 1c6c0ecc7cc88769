"""Errors raised while building a session pipeline, before anything is live.

Failures of a live session are not exceptions: `pipelines.session.run_session` returns them as a
`SessionFailed` outcome. What can go wrong earlier::

    PipelineError                 code, message, retryable
    ├── DailyUnavailableError     daily-python cannot run here (no Windows wheels)   fatal
    └── ProviderConfigError       an STT/LLM/TTS key or setting is missing           fatal

Messages name the setting to fix and never contain a secret.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A session pipeline could not be built; ``message`` says what to do next."""

    default_code = "pipeline_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def as_event_error(self) -> dict[str, object]:
        """The ``error`` object of a ``failed`` event."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class DailyUnavailableError(PipelineError):
    """DailyTransport cannot run in this process (daily-python missing or unusable)."""

    default_code = "daily_unavailable"


class ProviderConfigError(PipelineError):
    """A speech or language provider is not configured (a key or required setting is missing)."""

    default_code = "provider_config_missing"


def describe_error(exc: BaseException) -> str:
    """An exception as one line that always names what failed (a timeout's str() is empty)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
