"""What every mode's session runner provides, and the values they exchange with the manager.

Runners raise `tavus.errors.ProviderError` (or `SessionFailure`) and never touch a delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from worker.contract import EndReason, ResolvedMode, SessionJob, Transcript


class SessionFailure(Exception):
    """A session could not start or broke, for a reason that is not a provider call's error."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class ReadyInfo:
    """What the `ready` event tells the user."""

    room_url: str | None = None
    user_token: str | None = None
    conversation_id: str | None = None
    conversation_url: str | None = None
    cold_start: bool = False  # pipecat_daily: the session's process was spawned for it


@dataclass(frozen=True)
class Existing:
    """Provider state found for a session id before starting it."""

    finished: bool
    conversation_id: str | None = None


class LiveSession(Protocol):
    """A started session: the manager waits for it to end, or ends it."""

    ready: ReadyInfo

    async def wait_end(self) -> EndReason:
        """Return when the provider side ended by itself, with the contract reason."""
        ...

    async def release(self) -> None:
        """End every provider resource of the session; idempotent and safe to call at any time."""
        ...

    async def abandon(self) -> None:
        """Another worker owns the session now: drop what is local, touch no provider resource."""
        ...

    async def transcript(self) -> Transcript | None:
        """What was said, once the session is released (asked only when the job wants it);
        None when there is none to give."""
        ...


class SessionRunner(Protocol):
    """Starts sessions of one mode."""

    mode: ResolvedMode

    async def lookup(self, job: SessionJob) -> Existing | None:
        """What the providers already hold for this session id (a crashed worker's, or finished)."""
        ...

    async def start(self, job: SessionJob, existing: Existing | None) -> LiveSession:
        """Provision the session (adopting `existing` when it is live) and return it once usable."""
        ...

    async def cleanup(self, job: SessionJob) -> None:
        """Release whatever a failed or interrupted `start` may have left (idempotent)."""
        ...
