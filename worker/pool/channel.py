"""The pipes to one session process: commands down stdin, messages up stdout, stderr to our log.

Messages arrive through a callback in order; a line that is not a message is logged and skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from pipelines.errors import describe_error
from worker.pool.childlog import forward_stderr
from worker.pool.protocol import Command, Message, Start, Stop, decode, encode

log = structlog.get_logger(__name__)

_WRITE_TIMEOUT_S = 5.0


class ChildChannel:
    """Talks to one child over its three pipes; the reading tasks end at EOF."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        on_message: Callable[[Message], None],
        redact: Callable[[str], str],
    ) -> None:
        assert proc.stdin and proc.stdout and proc.stderr, "spawned with three pipes"
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._on_message = on_message
        self._log = log.bind(pid=proc.pid)
        self._reader = asyncio.create_task(self._read(), name=f"child-out:{proc.pid}")
        self._forwarder = asyncio.create_task(
            forward_stderr(proc.stderr, proc.pid, redact), name=f"child-err:{proc.pid}"
        )

    async def send(self, command: Command) -> bool:
        """Write one command and wait until the pipe took it; False if the child is gone."""
        if not self.send_nowait(command):
            return False
        try:
            async with asyncio.timeout(_WRITE_TIMEOUT_S):
                await self._stdin.drain()
        except (OSError, TimeoutError):
            return False
        return True

    def send_nowait(self, command: Command) -> bool:
        """Queue one command for writing; False if stdin is already closed."""
        if self._stdin.is_closing():
            return False
        try:
            self._stdin.write(encode(command))
        except OSError:
            return False
        return True

    def close_stdin(self) -> None:
        """EOF on the child's stdin (what it sees when the parent goes away)."""
        if not self._stdin.is_closing():
            self._stdin.close()

    async def wait_drained(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for stdout to reach EOF (every message handled)."""
        await asyncio.wait([self._reader], timeout=timeout_s)

    async def _read(self) -> None:
        while True:
            try:
                line = await self._stdout.readline()
            except ValueError:
                self._log.error("pool.child_bad_message", error="line too long")
                continue
            if not line:
                return
            try:
                message = decode(line)
            except ValueError as exc:
                self._log.error("pool.child_bad_message", error=describe_error(exc))
                continue
            if isinstance(message, Start | Stop):
                self._log.error("pool.child_bad_message", error=f"{message.type!r} from a child")
                continue
            self._on_message(message)
