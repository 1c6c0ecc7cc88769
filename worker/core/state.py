"""What the worker knows about one session while it runs here (`SessionState`, with its `Phase`)."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from worker.contract import EndReason, SessionJob
from worker.core.events import EventRoute, TerminalEvent
from worker.core.records import SessionRecord
from worker.ops.capacity import Slot
from worker.sessions.base import LiveSession, SessionRunner


class Phase(enum.Enum):
    """Where a session is on this worker. Only forward: STARTING → LIVE → CONCLUDED → PUBLISHED;
    ABANDONED from anywhere (another worker owns it now: drop it without a word)."""

    STARTING = "starting"  # taken here, not yet ready
    LIVE = "live"  # ready: followed until it ends
    CONCLUDED = "concluded"  # its one outcome is decided (or it needs none: duplicate, expired)
    PUBLISHED = "published"  # this worker published its outcome (confirmed)
    ABANDONED = "abandoned"


@dataclass
class SessionState:
    job: SessionJob
    route: EventRoute
    redelivered: bool = False  # RabbitMQ gave the job back after a consumer vanished
    started_at: float = field(default_factory=time.monotonic)
    phase: Phase = Phase.STARTING
    stop_reason: EndReason | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    live: LiveSession | None = None
    runner: SessionRunner | None = None
    task: asyncio.Task[None] | None = None
    record: SessionRecord | None = None  # the record this attempt wrote on the broker
    earlier_record: SessionRecord | None = None  # the one an earlier attempt left there
    outcome: TerminalEvent | None = None  # its `ended` or `failed`, once decided
    forgotten: bool = False  # out of the registry, its bookkeeping done
    holds_claim: bool = False  # this state took the session's claim (it releases it when done)
    slot: Slot | None = None  # its place in its mode's capacity on this worker

    def request_stop(self, reason: EndReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_requested.set()

    def advance(self, phase: Phase) -> None:
        """Move forward (never back; nothing leaves ABANDONED)."""
        order = list(Phase)
        if self.phase is Phase.ABANDONED:
            return
        if phase is Phase.ABANDONED or order.index(phase) > order.index(self.phase):
            self.phase = phase

    @property
    def is_finished(self) -> bool:
        """It reached its one outcome: a later copy of the job is a duplicate."""
        return self.phase in (Phase.CONCLUDED, Phase.PUBLISHED)

    @property
    def is_abandoned(self) -> bool:
        return self.phase is Phase.ABANDONED

    @property
    def is_outcome_out(self) -> bool:
        return self.phase is Phase.PUBLISHED

    @property
    def age_s(self) -> float:
        """How long ago the session's job was taken."""
        return time.monotonic() - self.started_at

    @property
    def is_recorded(self) -> bool:
        """A record of this session is on the broker: this attempt's, or an earlier one's."""
        return self.record is not None or self.earlier_record is not None


class StopDuringStart(Exception):
    """A stop (or abandon) arrived while the session was starting; what it started is released."""
