"""Time for the simulator: the injectable clock (seconds since the epoch) and the providers'
timestamp formats (µs: Tavus conversations/events; ms: personas/replicas; .000Z: Daily)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

DEFAULT_START_S = 1_790_000_000.0  # 2026-09-21, a fixed and readable start for manual clocks


class ManualClock:
    """A clock that only moves when told to, so tests advance time instead of sleeping."""

    def __init__(self, start_s: float = DEFAULT_START_S) -> None:
        self._now_s = start_s

    def __call__(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds} s)")
        self._now_s += seconds
        return self._now_s


def system_clock() -> float:
    """Wall-clock seconds since the epoch."""
    return time.time()


def _as_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def iso_us(epoch_s: float) -> str:
    """Tavus conversation/event style: ``2025-05-13T06:42:58.291561Z``."""
    return _as_datetime(epoch_s).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_ms(epoch_s: float) -> str:
    """Tavus persona/replica style: ``2024-10-18T23:20:28.943Z``."""
    return _as_datetime(epoch_s).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso_daily(epoch_s: float) -> str:
    """Daily style, 1 s granularity: ``2026-09-27T12:00:00.000Z``."""
    return _as_datetime(epoch_s).strftime("%Y-%m-%dT%H:%M:%S.000Z")
