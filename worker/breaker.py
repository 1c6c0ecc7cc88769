"""The Daily circuit breaker of one worker: after `threshold` Daily failures in a row (a start whose
Daily REST calls used up their retries, or a bot that could not join its room) pipecat_daily is
paused for `cool_down_s`. Meanwhile `auto` jobs run as phoenix_rest without trying Daily, and jobs
that ask for pipecat_daily fail fast. After the cool-down one job (the probe) tries Daily again.

    closed ──threshold failures in a row──▶ open ──cool-down over──▶ half_open (one probe)
    half_open ──a Daily start succeeds──▶ closed
    half_open ──a Daily failure──▶ open (another cool-down)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from tavus.errors import ProviderError
from worker.sessions.base import SessionFailure

log = structlog.get_logger(__name__)

BreakerState = Literal["closed", "open", "half_open"]
STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")
JOIN_FAILED = "daily_join_failed"


def is_daily_outage(exc: BaseException) -> bool:
    """A failure that says Daily is down: a transient Daily REST error (after its retries), or the
    bot failing to join its Daily room. Tavus errors and Daily's 4xx (a bad key) are not."""
    if isinstance(exc, ProviderError):
        return exc.provider == "daily" and exc.retryable
    return isinstance(exc, SessionFailure) and exc.code == JOIN_FAILED


@dataclass(frozen=True)
class BreakerSnapshot:
    """The breaker as /status, the metrics and the doctor show it."""

    state: BreakerState
    consecutive_failures: int
    threshold: int
    cool_down_s: float
    opened_total: int
    retry_in_s: float | None  # open: seconds until a probe may try Daily
    last_failure: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "threshold": self.threshold,
            "cool_down_s": self.cool_down_s,
            "opened_total": self.opened_total,
            "retry_in_s": None if self.retry_in_s is None else round(self.retry_in_s, 1),
            "last_failure": self.last_failure,
        }


class DailyBreaker:
    """Counts Daily failures in a row and decides whether a job may try Daily now (`admit`).

    `clock` is monotonic seconds (injectable for tests). A probe that never reports (its job was
    a duplicate, or expired) stops counting as in flight after `probe_timeout_s`."""

    def __init__(
        self,
        *,
        threshold: int,
        cool_down_s: float,
        probe_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if threshold < 1 or cool_down_s <= 0 or probe_timeout_s <= 0:
            raise ValueError("a breaker needs threshold >= 1, cool_down_s > 0, probe_timeout_s > 0")
        self.threshold = threshold
        self.cool_down_s = cool_down_s
        self._probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None  # None: closed
        self._probe_since: float | None = None
        self._opened_total = 0
        self._last_failure: str | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cool_down_s:
            return "open"
        return "half_open"

    def admit(self) -> bool:
        """Whether a job that wants Daily may try it now (half_open: only the one probe)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock()
        if self._probe_since is not None and now - self._probe_since < self._probe_timeout_s:
            return False
        self._probe_since = now
        log.info("daily_breaker.probing", failures=self._failures)
        self._changed("half_open")
        return True

    def record_success(self) -> None:
        """A pipecat_daily start got through Daily: the breaker closes."""
        was = self.state
        self._failures = 0
        self._opened_at = None
        self._probe_since = None
        if was != "closed":
            log.info("daily_breaker.closed")
            self._changed("closed")

    def record_failure(self, reason: str) -> None:
        """A pipecat_daily start failed because of Daily (`is_daily_outage`)."""
        self._failures += 1
        self._last_failure = reason
        state = self.state
        if state == "half_open" or (state == "closed" and self._failures >= self.threshold):
            self._opened_at = self._clock()
            self._probe_since = None
            self._opened_total += 1
            log.warning(
                "daily_breaker.opened",
                failures=self._failures,
                cool_down_s=self.cool_down_s,
                error=reason,
            )
            self._changed("open")

    def release_probe(self) -> None:
        """The probe ended without telling whether Daily works (a Tavus error, a stop)."""
        self._probe_since = None

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        retry_in_s = None
        if state == "open" and self._opened_at is not None:
            retry_in_s = max(self._opened_at + self.cool_down_s - self._clock(), 0.0)
        return BreakerSnapshot(
            state=state,
            consecutive_failures=self._failures,
            threshold=self.threshold,
            cool_down_s=self.cool_down_s,
            opened_total=self._opened_total,
            retry_in_s=retry_in_s,
            last_failure=self._last_failure,
        )

    def why_open(self) -> str:
        """Why Daily is not tried now, for a fallback_reason or a failed message."""
        snap = self.snapshot()
        when = (
            f"until Daily is tried again in about {snap.retry_in_s:.0f} s"
            if snap.retry_in_s is not None
            else "while one session tries Daily again"
        )
        return (
            f"Daily's circuit breaker is open on this worker after {snap.consecutive_failures} "
            f"Daily failures in a row (last: {snap.last_failure}); pipecat_daily is paused {when}"
        )

    def _changed(self, state: BreakerState) -> None:
        if self._on_change is not None:
            self._on_change(state)
