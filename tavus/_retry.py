"""When and how long to wait before sending a provider call again: exponential backoff with full
jitter, ``Retry-After`` honoured (capped), and which failures are safe to resend.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tavus.errors import ProviderError, RateLimitedError, ServerError, TransportError

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sent one.

    ``sleep`` and ``jitter`` are injectable so tests never really wait.
    """

    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0
    retry_on: tuple[type[ProviderError], ...] = (TransportError, RateLimitedError, ServerError)
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random

    @classmethod
    def instant(cls, attempts: int = 3) -> RetryPolicy:
        """Test mode: same decisions, no waiting."""
        return cls(attempts=attempts, sleep=_no_sleep)

    def delay_s(self, retry_number: int, error: ProviderError) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry)."""
        hinted = getattr(error, "retry_after_s", None)
        if isinstance(hinted, int | float):
            return min(float(hinted), self.max_retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry_number - 1))
        return self.jitter() * ceiling


async def _no_sleep(_delay_s: float) -> None:
    await asyncio.sleep(0)


def is_unprocessed(error: ProviderError) -> bool:
    """True when the provider surely did not act on the request: safe to send again."""
    if isinstance(error, TransportError):
        return not error.request_sent
    return isinstance(error, RateLimitedError)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
