"""What every handler reaches through ``request.app[CONTEXT]``: state, faults, lifecycle, the
call record and the simulator's settings (keys, Daily domain, rate-limit switches)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tavus.sim.clock import Clock
from tavus.sim.faults import Faults
from tavus.sim.lifecycle import Lifecycle
from tavus.sim.ratelimit import SlidingWindowLimiter
from tavus.sim.state import SimState

TAVUS_ROOM_SECRET = (
    "tavus-sim-room-secret"  # signs Tavus ``meeting_token``s (Tavus's own Daily key)
)


@dataclass
class RecordedCall:
    """One provider request the simulator received and what it answered (never the key)."""

    provider: str  # "tavus" | "daily"
    method: str
    path: str
    query: dict[str, str]
    json: Any | None
    status: int | None = None  # None: the connection was dropped without an answer
    is_key_valid: bool = False
    at_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "json": self.json,
            "status": self.status,
            "key_valid": self.is_key_valid,
            "at_s": self.at_s,
        }


@dataclass
class SimConfig:
    """Settings fixed at construction, except the two rate-limit switches."""

    tavus_api_keys: frozenset[str]
    daily_api_keys: frozenset[str]
    daily_domain: str = "avatar-sim"
    is_rate_limited: bool = True
    sends_retry_after: bool = False
    public_base_url: str = "http://127.0.0.1"

    @property
    def daily_domain_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.daily_domain}.daily.co"))


@dataclass
class SimContext:
    config: SimConfig
    clock: Clock
    state: SimState
    faults: Faults
    lifecycle: Lifecycle
    limiter: SlidingWindowLimiter = field(default_factory=SlidingWindowLimiter)
    calls: list[RecordedCall] = field(default_factory=list)
    sunk_webhooks: list[Any] = field(default_factory=list)  # bodies POSTed to /_sim/webhook-sink

    def reset(self) -> None:
        """Back to the seeded catalogue, no faults, no calls; the config is kept."""
        self.state.reset()
        self.faults.clear()
        self.calls.clear()
        self.lifecycle.clear()
        self.limiter.reset()
        self.sunk_webhooks.clear()


CONTEXT = web.AppKey("sim_context", SimContext)
