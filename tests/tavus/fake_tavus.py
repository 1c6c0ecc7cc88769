"""A scripted Tavus for ``httpx.MockTransport``: it answers only the requests it was told to
expect, in order, records what it saw, and fails the test on anything else."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Answer = (
    httpx.Response
    | Exception
    | Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Awaitable[httpx.Response]]
)


@dataclass
class Expected:
    method: str
    path: str
    answer: Answer


@dataclass
class FakeTavus:
    """Expectations are consumed first to last; an unexpected request raises AssertionError."""

    prefix: str = "/v2"
    expected: list[Expected] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)

    def expect(self, method: str, path: str, answer: Answer, *, times: int = 1) -> FakeTavus:
        for _ in range(times):
            self.expected.append(Expected(method, self.prefix + path, answer))
        return self

    def reply(
        self, method: str, path: str, status: int = 200, body: Any = None, **kw: Any
    ) -> FakeTavus:
        """Expect one request and answer it with ``status`` and a JSON ``body`` (None: no body)."""
        if body is None:
            return self.expect(method, path, httpx.Response(status, **kw))
        return self.expect(method, path, httpx.Response(status, json=body, **kw))

    def __call__(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        self.seen.append(request)
        path = request.url.raw_path.decode().partition("?")[0]  # still %-escaped
        where = f"{request.method} {path}"
        if not self.expected:
            raise AssertionError(f"unexpected request {where}: the fake expected nothing more")
        nxt = self.expected.pop(0)
        if (nxt.method, nxt.path) != (request.method, path):
            raise AssertionError(f"unexpected request {where}; expected {nxt.method} {nxt.path}")
        if isinstance(nxt.answer, Exception):
            raise nxt.answer
        if callable(nxt.answer):
            return nxt.answer(request)
        return nxt.answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def assert_done(self) -> None:
        left = [f"{e.method} {e.path}" for e in self.expected]
        assert not left, f"expected requests never came: {left}"

    def body(self, index: int = -1) -> Any:
        """The JSON body of a request the fake saw."""
        return json.loads(self.seen[index].content)
