"""Fault injection: per-endpoint latency, "fail the next N calls", dropped connections, and the
Tavus account knobs (concurrency cap, out of credits). Endpoints are "METHOD /path/pattern"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A method and path pattern: ``{name}`` or ``*`` match one segment, ``**`` the rest."""

    spec: str
    method: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        method, _, path = spec.strip().partition(" ")
        path = path.strip()
        if not method or not path.startswith("/"):
            raise ValueError(
                f"an endpoint is 'METHOD /path', e.g. 'POST /v2/conversations'; got {spec!r}"
            )
        parts = []
        for segment in path.rstrip("/").split("/"):
            if segment == "**":
                parts.append(".*")
            elif segment == "*" or (segment.startswith("{") and segment.endswith("}")):
                parts.append("[^/]+")
            else:
                parts.append(re.escape(segment))
        return cls(spec.strip(), method.upper(), re.compile("/".join(parts) + "/?"))

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and self.pattern.fullmatch(path) is not None


@dataclass
class FailRule:
    """Answer the next ``remaining`` matching calls with ``status`` (and a body / Retry-After)."""

    endpoint: Endpoint
    remaining: int
    status: int
    body: Any | None = None
    retry_after_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint.spec,
            "remaining": self.remaining,
            "status": self.status,
            "body": self.body,
            "retry_after_s": self.retry_after_s,
        }


@dataclass
class DropRule:
    """Close the connection of the next ``remaining`` matching calls without answering."""

    endpoint: Endpoint
    remaining: int


class Faults:
    """The fault plan, changed from tests (Python) or over HTTP (``/_sim/faults``)."""

    def __init__(
        self, *, concurrency_cap: int | None = None, is_out_of_credits: bool = False
    ) -> None:
        self._initial_cap = concurrency_cap
        self._initial_credits = is_out_of_credits
        self._latencies: dict[str, tuple[Endpoint, float]] = {}
        self._failures: list[FailRule] = []
        self._drops: list[DropRule] = []
        self.concurrency_cap = concurrency_cap
        self.is_out_of_credits = is_out_of_credits

    def latency(self, endpoint: str, seconds: float) -> None:
        """Delay every matching call by ``seconds`` (0 removes the delay)."""
        parsed = Endpoint.parse(endpoint)
        if seconds <= 0:
            self._latencies.pop(parsed.spec, None)
        else:
            self._latencies[parsed.spec] = (parsed, seconds)

    def fail_next(
        self,
        endpoint: str,
        n: int = 1,
        status: int = 503,
        *,
        body: Any | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Answer the next ``n`` matching calls with ``status`` instead of handling them."""
        if n < 1 or not 100 <= status <= 599:
            raise ValueError(
                f"fail_next needs n >= 1 and an HTTP status; got n={n}, status={status}"
            )
        self._failures.append(FailRule(Endpoint.parse(endpoint), n, status, body, retry_after_s))

    def drop_next(self, endpoint: str, n: int = 1) -> None:
        """Close the connection without answering the next ``n`` matching calls."""
        if n < 1:
            raise ValueError(f"drop_next needs n >= 1; got {n}")
        self._drops.append(DropRule(Endpoint.parse(endpoint), n))

    def set_concurrency_cap(self, cap: int | None) -> None:
        """Limit non-test active Tavus conversations (None: no limit)."""
        if cap is not None and cap < 0:
            raise ValueError(f"the concurrency cap cannot be negative; got {cap}")
        self.concurrency_cap = cap

    def set_out_of_credits(self, is_out: bool = True) -> None:
        """Make Tavus answer conversation creates with 402 while ``is_out``."""
        self.is_out_of_credits = is_out

    def clear(self) -> None:
        """Back to no faults and the account knobs the simulator was built with."""
        self._latencies.clear()
        self._failures.clear()
        self._drops.clear()
        self.concurrency_cap = self._initial_cap
        self.is_out_of_credits = self._initial_credits

    def latency_for(self, method: str, path: str) -> float:
        delays = [s for endpoint, s in self._latencies.values() if endpoint.matches(method, path)]
        return max(delays, default=0.0)

    def take_failure(self, method: str, path: str) -> FailRule | None:
        """The failure to inject for this call, if any (consumes one)."""
        for rule in self._failures:
            if rule.remaining > 0 and rule.endpoint.matches(method, path):
                rule.remaining -= 1
                return rule
        return None

    def take_drop(self, method: str, path: str) -> bool:
        """Whether to drop this call's connection (consumes one)."""
        for drop in self._drops:
            if drop.remaining > 0 and drop.endpoint.matches(method, path):
                drop.remaining -= 1
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": {spec: s for spec, (_, s) in self._latencies.items()},
            "fail_next": [r.to_json() for r in self._failures if r.remaining > 0],
            "drop_next": [
                {"endpoint": d.endpoint.spec, "remaining": d.remaining}
                for d in self._drops
                if d.remaining > 0
            ],
            "concurrency_cap": self.concurrency_cap,
            "out_of_credits": self.is_out_of_credits,
        }
