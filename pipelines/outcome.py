"""How a session ended: the ``ended`` reasons and ``failed`` codes the worker publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EndReason = Literal["participant_left", "max_duration", "idle", "stopped", "provider_ended"]


@dataclass(frozen=True)
class SessionEnded:
    """The session ran and is over; ``ready`` says whether the user could have joined."""

    reason: EndReason
    duration_s: float
    ready: bool
    conversation_id: str | None


@dataclass(frozen=True)
class SessionFailed:
    """The session could not start or broke; ``message`` says what to do next."""

    code: str
    message: str
    retryable: bool
    duration_s: float
    ready: bool
    conversation_id: str | None

    def as_event_error(self) -> dict[str, object]:
        """The ``error`` object of a ``failed`` event."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


SessionOutcome = SessionEnded | SessionFailed
