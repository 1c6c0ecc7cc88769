"""The cross-worker lock on finding or creating one persona definition: an exclusive queue named
after the definition's hash, held on the broker (as session claims are) while Tavus is asked.

RabbitMQ lets one connection hold an exclusive queue and drops it when that connection dies, so a
worker that dies while holding the lock never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import structlog
from aio_pika.abc import AbstractChannel

from worker.broker import Broker, BrokerError, ResourceLocked, broker_errors

log = structlog.get_logger(__name__)

WAIT_TIMEOUT_S = 60.0
RETRY_S = 0.2


class PersonaLocks:
    """`hold(key)`: held by one worker at a time across the cluster (`tavus.resolve.SharedLock`)."""

    def __init__(self, broker: Broker, *, wait_timeout_s: float = WAIT_TIMEOUT_S) -> None:
        self._broker = broker
        self._wait_timeout_s = wait_timeout_s

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Wait (up to `wait_timeout_s`) until no other worker holds `key`, hold it for the block.

        Should the broker not answer, or the wait run out, the block runs unlocked (logged): a
        second persona is a smaller harm than a session that cannot start.
        """
        name = self._broker.topo.persona_lock_queue(key)
        try:
            channel = await self._acquire(name)
        except (BrokerError, TimeoutError) as exc:
            log.warning(
                "persona.lock_unavailable",
                persona_hash=key,
                error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )
            yield
            return
        try:
            yield
        finally:
            await self._release(channel, name)

    async def _acquire(self, name: str) -> AbstractChannel:
        """A channel on which `name` is declared exclusive to this worker's connection."""
        assert self._broker.connection is not None, "connect() first"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_timeout_s
        while True:
            with broker_errors(f"open a channel for {name}"):
                channel = await self._broker.connection.channel(publisher_confirms=False)
            try:
                with broker_errors(f"take the lock {name}"):
                    await channel.declare_queue(
                        name, exclusive=True, auto_delete=False, robust=False
                    )
                return channel
            except ResourceLocked:
                await _close(channel)  # another worker holds the lock (the broker closed it)
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"{name} was held by another worker for {self._wait_timeout_s:g} s"
                )
            await asyncio.sleep(RETRY_S * (0.5 + random.random()))

    async def _release(self, channel: AbstractChannel, name: str) -> None:
        try:
            with broker_errors(f"release the lock {name}"):
                await channel.queue_delete(name)
        except BrokerError as exc:  # the queue goes when the connection does
            log.warning("persona.lock_release_failed", queue=name, error=str(exc) or "no detail")
        await _close(channel)


async def _close(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        with contextlib.suppress(BrokerError), broker_errors("close a lock channel"):
            await channel.close()
