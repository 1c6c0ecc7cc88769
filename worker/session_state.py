"""What the worker knows about one session while it runs here (`SessionState`), and what should
happen to its job's delivery once it is ready or has failed to start (`Outcome`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.contract import EndReason, SessionJob
from worker.events import EventRoute, TerminalEvent
from worker.sessions.base import LiveSession, SessionRunner

Action = Literal["ack", "requeue", "retry", "dead_letter"]


@dataclass(frozen=True)
class Outcome:
    """What to do with the job's delivery once the session is ready or has failed to start."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""
    dead_letter_kind: Literal["invalid_job", "exhausted", "internal"] = "exhausted"


@dataclass
class SessionState:
    job: SessionJob
    route: EventRoute
    started_at: float = field(default_factory=time.monotonic)
    stop_reason: EndReason | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    live: LiveSession | None = None
    runner: SessionRunner | None = None
    task: asyncio.Task[None] | None = None
    is_finished: bool = False  # reached its one outcome: a later copy of the job is a duplicate
    is_forgotten: bool = False
    has_record: bool = False
    had_record: bool = False  # an earlier attempt's note was there when this one started
    record: dict[str, Any] = field(default_factory=dict)
    is_abandoned: bool = False  # another worker owns it now: drop it without a word
    outcome: TerminalEvent | None = None  # its `ended` or `failed`, once decided
    is_outcome_out: bool = False  # this worker published it (confirmed)
    is_redelivered: bool = False  # RabbitMQ gave it back after a consumer vanished

    def request_stop(self, reason: EndReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_requested.set()

    @property
    def age_s(self) -> float:
        """How long ago the session's job was taken."""
        return time.monotonic() - self.started_at

    @property
    def is_noted(self) -> bool:
        """A note of this session is on the broker: this attempt's, or an earlier one's."""
        return self.has_record or self.had_record


class StopDuringStart(Exception):
    """A stop (or abandon) arrived while the session was starting; what it started is released."""
