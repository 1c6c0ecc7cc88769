"""The Daily circuit breaker's state machine and the mode choices it drives, on an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from tavus.errors import AuthError, ServerError
from worker.breaker import DailyBreaker, is_daily_outage
from worker.contract import ResolvedMode
from worker.modes import ModeResolver
from worker.sessions.base import SessionFailure


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class Runner:
    def __init__(self, mode: ResolvedMode) -> None:
        self.mode = mode


def breaker(clock: Clock, threshold: int = 3, cool_down_s: float = 60.0) -> DailyBreaker:
    return DailyBreaker(
        threshold=threshold, cool_down_s=cool_down_s, probe_timeout_s=30.0, clock=clock
    )


def tripped(clock: Clock) -> DailyBreaker:
    """A breaker opened by three timeouts in a row."""
    b = breaker(clock)
    for _ in range(3):
        b.record_failure("timeout")
    return b


def resolver(b: DailyBreaker) -> ModeResolver:
    runners: dict[ResolvedMode, Any] = {
        "pipecat_daily": Runner("pipecat_daily"),
        "phoenix_rest": Runner("phoenix_rest"),
    }
    return ModeResolver(runners, default_mode="auto", breaker=b)


def test_opens_after_threshold_failures_in_a_row_only() -> None:
    """Two Daily failures, a success, two more: still closed; a third in a row opens it."""
    clock = Clock()
    b = breaker(clock)
    for _ in range(2):
        b.record_failure("503")
    b.record_success()
    b.record_failure("503")
    b.record_failure("503")
    assert b.state == "closed" and b.admit()
    b.record_failure("Daily answered 503")
    snap = b.snapshot()
    assert (snap.state, snap.consecutive_failures, snap.opened_total) == ("open", 3, 1)
    assert snap.retry_in_s == 60.0 and snap.last_failure == "Daily answered 503"
    assert not b.admit()


def test_after_the_cool_down_one_probe_tries_daily_and_its_success_closes() -> None:
    """Past the cool-down exactly one job may try Daily; when it gets through, all jobs may."""
    clock = Clock()
    b = tripped(clock)
    clock.now_s += 59.9
    assert not b.admit()
    clock.now_s += 0.2
    assert b.state == "half_open"
    assert b.admit()  # the probe
    assert not b.admit()  # everyone else waits for it
    b.record_success()
    assert b.snapshot().state == "closed" and b.admit() and b.admit()
    assert b.snapshot().consecutive_failures == 0


def test_a_failed_probe_opens_for_another_cool_down() -> None:
    """A probe that fails opens the breaker again for a whole new cool-down."""
    clock = Clock()
    b = tripped(clock)
    clock.now_s += 61
    assert b.admit()
    b.record_failure("still down")
    snap = b.snapshot()
    assert (snap.state, snap.opened_total, snap.retry_in_s) == ("open", 2, 60.0)
    clock.now_s += 30
    assert not b.admit()


def test_a_probe_that_tells_nothing_lets_another_job_probe() -> None:
    """A probe stopped or failed for a non-Daily reason (released), or one that never reports
    (timed out), lets the next job try Daily."""
    clock = Clock()
    b = tripped(clock)
    clock.now_s += 61
    assert b.admit()
    b.release_probe()
    assert b.admit()
    assert not b.admit()
    clock.now_s += 31  # probe_timeout_s
    assert b.admit()


def test_the_breaker_reports_each_change() -> None:
    """Opening, probing and closing are each reported once (they feed the metrics)."""
    clock, changes = Clock(), list[str]()
    b = DailyBreaker(
        threshold=1, cool_down_s=10, probe_timeout_s=5, clock=clock, on_change=changes.append
    )
    b.record_failure("down")
    b.record_failure("down")  # already open: no change
    clock.now_s += 11
    b.admit()
    b.record_success()
    b.record_success()
    assert changes == ["open", "half_open", "closed"]


def test_what_counts_as_a_daily_outage() -> None:
    """Transient Daily errors and join failures count; Tavus errors and Daily 4xx do not."""
    daily_down = ServerError("Daily answered 503", provider="daily", status=503)
    daily_401 = AuthError("DAILY_API_KEY was rejected (401)", provider="daily", status=401)
    tavus_down = ServerError("Tavus answered 503", provider="tavus", status=503)
    assert is_daily_outage(daily_down)
    assert is_daily_outage(SessionFailure("daily_join_failed", "cannot join", retryable=True))
    assert not is_daily_outage(daily_401)
    assert not is_daily_outage(tavus_down)
    assert not is_daily_outage(SessionFailure("avatar_timeout", "no replica"))


def test_open_breaker_sends_auto_to_phoenix_rest_and_refuses_explicit_pipecat_daily() -> None:
    """While open, `auto` resolves to phoenix_rest naming the breaker, and an explicit
    pipecat_daily job is refused with a reason that says when to resend and how to run now."""
    clock = Clock()
    b = breaker(clock, threshold=1)
    modes = resolver(b)
    assert modes.resolve("auto").mode == "pipecat_daily"
    b.record_failure("Daily answered 503")
    auto = modes.resolve("auto")
    assert auto.mode == "phoenix_rest" and auto.fallback is None
    assert auto.fallback_reason is not None
    assert "circuit breaker is open" in auto.fallback_reason
    assert "Daily answered 503" in auto.fallback_reason
    with pytest.raises(SessionFailure) as refused:
        modes.resolve("pipecat_daily")
    assert refused.value.code == "daily_unavailable" and not refused.value.retryable
    assert "in about 60 s" in refused.value.message and "mode auto" in refused.value.message
    assert modes.resolve("phoenix_rest").fallback_reason is None


def test_the_probe_is_marked_and_only_one_job_gets_it() -> None:
    """Past the cool-down the first job resolves to pipecat_daily as the probe; the next `auto`
    job still runs as phoenix_rest."""
    clock = Clock()
    b = breaker(clock, threshold=1)
    modes = resolver(b)
    b.record_failure("down")
    clock.now_s += 61
    probe = modes.resolve("auto")
    assert probe.mode == "pipecat_daily" and probe.is_probe and probe.fallback is not None
    assert modes.resolve("auto").mode == "phoenix_rest"
    b.record_success()
    after = modes.resolve("auto")
    assert after.mode == "pipecat_daily" and not after.is_probe
