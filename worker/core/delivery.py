"""What became of a job (`JobResult`), and the one place that turns it into what happens to its
delivery (`Delivery`): ack, requeue, retry later through a delay queue, or dead-letter.

Session code returns a `JobResult` and never decides a delivery itself; `worker.core.intake`
carries out `delivery_for(result)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["ack", "requeue", "retry", "defer", "dead_letter"]
DeadLetterKind = Literal["invalid_job", "exhausted", "internal"]


@dataclass(frozen=True)
class Delivery:
    """What to do with a job's delivery."""

    action: Action
    reason: str = ""
    delay_s: float = 0.0
    dead_letter_kind: DeadLetterKind = "exhausted"


@dataclass(frozen=True)
class Started:
    """The session is ready and runs on (here, or adopted by another worker)."""


@dataclass(frozen=True)
class Settled:
    """The job needs nothing more: it reached its outcome, or it was a duplicate or expired."""

    reason: str


@dataclass(frozen=True)
class NotNow:
    """Nothing started and nothing is decided: another delivery (any worker) takes it up later
    (the broker is away, the worker is full, stopping or draining, the session is still starting
    here, another worker owns it now)."""

    reason: str


@dataclass(frozen=True)
class Deferred:
    """Nothing started: this worker has no room for the job's mode (an explicit pipecat_daily
    job on a worker whose pipecat_daily slots are full or gated). It waits out the shortest retry
    delay, its attempt unchanged, and goes to whichever worker has room (no hot requeue loop)."""

    reason: str


@dataclass(frozen=True)
class RetryLater:
    """A transient failure: the next attempt runs after `delay_s`."""

    code: str
    delay_s: float


@dataclass(frozen=True)
class GaveUp:
    """A transient failure on the last attempt: its `failed` is out."""

    code: str
    attempts: int


@dataclass(frozen=True)
class Rejected:
    """The job cannot be run as it is (invalid, or a `reply_to` the worker refuses)."""

    reason: str


@dataclass(frozen=True)
class Crashed:
    """The worker hit a bug while running the session; its `failed` is out."""

    error: str


JobResult = Started | Settled | NotNow | Deferred | RetryLater | GaveUp | Rejected | Crashed


def delivery_for(result: JobResult) -> Delivery:
    """The one mapping from what became of a job to its delivery."""
    match result:
        case Started():
            return Delivery("ack")
        case Settled(reason):
            return Delivery("ack", reason=reason)
        case NotNow(reason):
            return Delivery("requeue", reason=reason)
        case Deferred(reason):
            return Delivery("defer", reason=reason)
        case RetryLater(code, delay_s):
            return Delivery("retry", reason=code, delay_s=delay_s)
        case GaveUp(code, attempts):
            return Delivery("dead_letter", reason=f"{code} after {attempts} attempts")
        case Rejected(reason):
            return Delivery("dead_letter", reason=reason, dead_letter_kind="invalid_job")
        case Crashed(error):
            return Delivery(
                "dead_letter", reason=f"internal error: {error}", dead_letter_kind="internal"
            )
    raise AssertionError(f"unknown job result {result!r}")
