"""The reliability suite's additions to the worker harness: named broker connections that a test
can cut with `rabbitmqctl`, worker processes whose stderr is kept, and the promise's checks
(one terminal event per job, no session with two live conversations, nothing left active).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from tests.worker.harness import Harness
from worker.app import WorkerApp

TERMINAL = ("ended", "failed", "expired")
RABBITMQCTL_TIMEOUT_S = 30.0


async def rabbitmqctl(*args: str, timeout_s: float = RABBITMQCTL_TIMEOUT_S) -> str:
    """Run `rabbitmqctl ARGS` and return its stdout; raise with its stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"rabbitmqctl {' '.join(args)} took over {timeout_s} s") from None
    if proc.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {err.decode()[:300]}")
    return out.decode()


async def connection_pids(name: str) -> list[str]:
    """The broker-side pids of the connections whose client-provided name is `name`."""
    listing = await rabbitmqctl("list_connections", "-q", "pid", "client_properties")
    needle = f'"{name}"'
    return [line.split("\t", 1)[0] for line in listing.splitlines() if needle in line]


async def cut_connections(name: str, reason: str = "reliability test cut") -> int:
    """Close (server side, CONNECTION_FORCED) every connection named `name`; how many were cut."""
    pids = await connection_pids(name)
    for pid in pids:
        with contextlib.suppress(AssertionError):  # it may have gone by itself meanwhile
            await rabbitmqctl("close_connection", pid, reason)
    return len(pids)


async def wait_connected(name: str, timeout_s: float = 20.0) -> None:
    """Wait until a connection named `name` is open at the broker again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await connection_pids(name):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no connection named {name!r} within {timeout_s} s")


async def poll_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Check `predicate` every 50 ms until it holds (True) or `timeout_s` passes (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def peak_overlap(conversations: list[Any]) -> int:
    """The most of these simulator conversations that were active at the same instant."""
    spans = [
        (c.created_at_s, c.ended_at_s if c.ended_at_s is not None else float("inf"))
        for c in conversations
    ]
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    live = peak = 0
    for _, step in points:
        live += step
        peak = max(peak, live)
    return peak


class BrokerProxy:
    """A TCP proxy between some workers and RabbitMQ that a test can take down for a while: an
    outage (or network partition) that only the workers behind it see."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._down_until = 0.0
        self.port = 0
        self.cuts = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url_for(self, url: str) -> str:
        """`url` (user, password, vhost, query) rerouted through this proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )

    @property
    def is_down(self) -> bool:
        return asyncio.get_running_loop().time() < self._down_until

    def cut(self, down_s: float = 0.0) -> None:
        """Drop every link now, and refuse new ones for `down_s` seconds."""
        self.cuts += 1
        self._down_until = asyncio.get_running_loop().time() + down_s
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._links.discard(w)
            w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    async def aclose(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class ReliabilityHarness(Harness):
    """The worker harness plus broker faults, captured worker stderr and the promise's checks."""

    extra_queues: set[str] = field(default_factory=set)
    proxies: list[BrokerProxy] = field(default_factory=list)
    seen_valid: set[str] = field(default_factory=set)
    seen_marks: set[str] = field(default_factory=set)
    worker_url: str = ""  # when set, the broker URL the tests give their workers

    async def proxy(self) -> BrokerProxy:
        """A proxy to this harness's broker (closed with the harness)."""
        parts = urlsplit(self.url)
        proxy = BrokerProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def start_proxied_worker(
        self, proxy: BrokerProxy, *, reconnect_interval_s: float = 0.5, **overrides: Any
    ) -> WorkerApp:
        """An in-process worker that reaches the broker through `proxy`."""
        url = self.named_url(self.connection_name(), reconnect_interval_s=reconnect_interval_s)
        return await self.start_worker(amqp_url=SecretStr(proxy.url_for(url)), **overrides)

    def named_url(self, name: str, *, reconnect_interval_s: float = 0.5, url: str = "") -> str:
        """The broker URL with a connection name (for `cut_connections`) and a reconnect interval."""
        base = (url or self.url).split("?", 1)[0]
        query = urlencode({"name": name, "reconnect_interval": reconnect_interval_s})
        return f"{base}?{query}"

    def connection_name(self) -> str:
        return f"{self.prefix}-conn-{uuid.uuid4().hex[:6]}"

    async def start_named_worker(
        self, name: str, *, reconnect_interval_s: float = 0.5, **overrides: Any
    ) -> WorkerApp:
        """An in-process worker whose broker connection is named `name`."""
        url = self.named_url(name, reconnect_interval_s=reconnect_interval_s)
        return await self.start_worker(amqp_url=SecretStr(url), **overrides)

    async def spawn_capturing(
        self, *, module: str = "worker.cli", **overrides: Any
    ) -> asyncio.subprocess.Process:
        """A real `avatar-worker run` process whose every stderr line is kept in `stderr_lines`."""
        return await self.spawn_worker_process(module=module, **overrides)

    # --- the promise ----------------------------------------------------------------------
    def terminal(self, session_id: str) -> list[dict[str, Any]]:
        return [e for e in self.of(session_id) if e["status"] in TERMINAL]

    async def wait_terminal(self, session_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The first terminal event (`ended`, `failed`, `expired`) of the session."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            found = self.terminal(session_id)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no terminal event for {session_id} in {timeout_s} s; saw {self.statuses(session_id)}"
        )

    def outcome_counts(self, session_ids: list[str]) -> Counter[int]:
        """How many sessions got 0, 1, 2… terminal events."""
        return Counter(len(self.terminal(sid)) for sid in session_ids)

    def ready_conversations(self, session_id: str) -> set[str]:
        return {e["conversation_id"] for e in self.of(session_id) if e["status"] == "ready"}

    def active_conversations(self) -> list[str]:
        """Conversations of this test's sessions (named `aw-…`) still active at the simulator."""
        return [
            cid
            for cid, c in self.sim.conversations.items()
            if c.status == "active"
            and str(c.request.get("conversation_name", "")).startswith("aw-")
        ]

    def max_overlapping_conversations(self, session_id: str) -> int:
        """The most conversations of one session that were active at the same instant."""
        return peak_overlap(
            [self.sim.conversations[cid] for cid in self.created_conversations(session_id)]
        )

    async def aclose(self) -> None:
        await super().aclose()
        for proxy in self.proxies:
            await proxy.aclose()
        if self.extra_queues:
            import aio_pika

            with contextlib.suppress(Exception):
                connection = await aio_pika.connect(self.url)
                async with connection:
                    channel = await connection.channel()
                    for name in self.extra_queues:
                        with contextlib.suppress(Exception):
                            await channel.queue_delete(name)
