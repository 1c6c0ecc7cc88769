"""A TCP proxy from a local port to one broker node, for cutting one worker off from its node:
`cut()` blackholes the traffic as a network partition does (nothing flows either way, nobody sees a
close, new connections hang), `restore()` lets it flow again (what was held is then delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class NodeProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host:upstream_port` until `cut()`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[asyncio.Task[None]] = set()
        self.port = 0

    @classmethod
    async def to(cls, url: str) -> NodeProxy:
        """A started proxy to the node of `url` (an AMQP URL)."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 5672)
        await proxy.start()
        return proxy

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url_for(self, url: str) -> str:
        """`url` (user, password, vhost, query) sent through this proxy."""
        parts = urlsplit(url)
        creds, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{creds}{at}127.0.0.1:{self.port}"))

    @property
    def is_cut(self) -> bool:
        return not self._flowing.is_set()

    def cut(self) -> None:
        """Blackhole every link, open or new: bytes stop in both directions, no close is seen."""
        self._flowing.clear()

    def restore(self) -> None:
        """Let traffic flow again (held bytes go through; a peer that gave up then closes)."""
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            await self._flowing.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                return
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer),
                    self._pipe(up_reader, writer),
                    return_exceptions=True,
                )
            finally:
                up_writer.transport.abort()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a link that broke is simply gone, as on a real network
        finally:
            writer.transport.abort()
            self._links.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            data = await reader.read(65536)
            if not data:
                writer.transport.abort()  # the other direction ends with it
                return
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()

    async def aclose(self) -> None:
        """Stop listening and drop every link (idempotent)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._links):
            task.cancel()
        for task in list(self._links):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._flowing.set()
