"""Daily's rate-limit buckets as sliding windows per API key (daily-api.md §6): most endpoints
20/1 s and 100/5 s, ``DELETE /rooms/:name`` 2/1 s and 50/30 s. Rejected calls are not counted."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# bucket name -> [(max calls, window seconds)]
BUCKETS: dict[str, list[tuple[int, float]]] = {
    "general": [(20, 1.0), (100, 5.0)],
    "delete": [(2, 1.0), (50, 30.0)],
}


def daily_bucket(method: str, path: str) -> str:
    """The bucket a Daily call counts against."""
    is_room_delete = method == "DELETE" and path.startswith("/v1/rooms/")
    return "delete" if is_room_delete else "general"


class SlidingWindowLimiter:
    """Counts calls per (key, bucket) over each window; uses a monotonic clock by default."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: dict[tuple[str, str], deque[float]] = {}

    def try_acquire(self, key: str, bucket: str) -> float | None:
        """Count one call and return None, or return the seconds until one would be allowed."""
        now_s = self._clock()
        calls = self._calls.setdefault((key, bucket), deque())
        longest_s = max(window_s for _, window_s in BUCKETS[bucket])
        while calls and calls[0] <= now_s - longest_s:
            calls.popleft()
        wait_s = 0.0
        for limit, window_s in BUCKETS[bucket]:
            recent = [t for t in calls if t > now_s - window_s]
            if len(recent) >= limit:
                wait_s = max(wait_s, recent[-limit] + window_s - now_s)
        if wait_s > 0:
            return wait_s
        calls.append(now_s)
        return None

    def reset(self) -> None:
        self._calls.clear()
