"""The join URL in one call: publish a job and wait, on RabbitMQ's direct reply-to, for its `ready`
event (or the `failed`/`expired` that came instead); the session keeps running, and its later
events can be followed on the same channel.

Direct reply-to (`amq.rabbitmq.reply-to`) needs no reply queue. The broker's rules: the reply
consumer is on the channel that publishes the job, in no-ack mode, started before the publish;
the worker publishes each event to the default exchange with routing key = the job's `reply_to`
(the broker rewrites it to a per-channel name). So each call here opens a channel of its own and
closes it at the end; events sent after that are dropped by the broker, harmlessly.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from worker.broker import Topology
from worker.contract import EventError, SessionJob
from worker.producer import publish_session_job

log = structlog.get_logger("worker.client")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DECISIVE = frozenset({"ready", "failed", "expired"})  # what `request_session` returns on
TERMINAL = frozenset({"ended", "failed", "expired"})  # nothing of the session follows these


class NoReplyError(TimeoutError):
    """No decisive event within the timeout. The job may still be queued or starting: publish
    `session.stop` (or give jobs a `not_after`) if it must not start any more."""

    def __init__(self, session_id: str, timeout_s: float, seen: list[str]) -> None:
        got = f"; saw {', '.join(seen)}" if seen else "; no event at all (is a worker running?)"
        super().__init__(f"no ready/failed/expired event for {session_id} in {timeout_s:g} s{got}")
        self.session_id = session_id
        self.seen = seen


class ReplyChannelClosed(ConnectionError):
    """The channel the replies arrive on closed: this caller gets no more events of the session
    (the session itself is unaffected)."""


@dataclass(frozen=True)
class SessionReply:
    """One event of the session as it arrived: the contract's JSON object, with typed accessors.

    Kept as the JSON object so that fields a newer worker adds reach the caller unchanged.
    """

    event: dict[str, Any]
    correlation_id: str | None = None

    @property
    def status(self) -> str:
        return str(self.event.get("status", ""))

    @property
    def session_id(self) -> str:
        return str(self.event.get("session_id", ""))

    @property
    def join_url(self) -> str | None:
        """Where the user joins: `conversation_url` (phoenix_rest) or `room_url` (pipecat_daily)."""
        url = self.event.get("conversation_url") or self.event.get("room_url")
        return str(url) if url else None

    @property
    def user_token(self) -> str | None:
        """pipecat_daily: the user's meeting token for `room_url` (None for a public room)."""
        token = self.event.get("user_token")
        return str(token) if token else None

    @property
    def error(self) -> EventError | None:
        """Why it failed (or is being retried)."""
        raw = self.event.get("error")
        return EventError.model_validate(raw) if isinstance(raw, dict) else None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class SessionCall:
    """A published job and the channel its events come back on; `first` is the decisive event.

    `async for reply in call.follow(...)` yields the events after `first` until a terminal one.
    """

    def __init__(self, channel: AbstractChannel, session_id: str, correlation_id: str) -> None:
        self._channel = channel
        self.session_id = session_id
        self.correlation_id = correlation_id
        self.seen: list[SessionReply] = []  # every event so far, `first` included
        self.first: SessionReply | None = None
        self._replies: asyncio.Queue[SessionReply | None] = asyncio.Queue()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        if message.correlation_id not in (None, self.correlation_id):
            log.warning("client.foreign_reply", session_id=self.session_id)
            return
        try:
            event = json.loads(message.body)
        except ValueError:
            log.warning("client.bad_reply", session_id=self.session_id, size=len(message.body))
            return
        if isinstance(event, dict):
            self._replies.put_nowait(SessionReply(event, message.correlation_id))

    def _on_close(self, *_args: object) -> None:
        self._replies.put_nowait(None)

    async def _next(self, deadline: float) -> SessionReply | None:
        """The next event, or None when the deadline passed first; raises when the channel closed."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            reply = await asyncio.wait_for(self._replies.get(), remaining)
        except TimeoutError:
            return None
        if reply is None:
            raise ReplyChannelClosed(
                f"the reply channel for {self.session_id} closed; its events no longer reach here"
            )
        self.seen.append(reply)
        return reply

    async def wait_first(self, timeout_s: float) -> SessionReply:
        """Wait for `ready`, `failed` or `expired` (skipping `accepted`/`retrying`)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.first is None:
            reply = await self._next(deadline)
            if reply is None:
                raise NoReplyError(self.session_id, timeout_s, [r.status for r in self.seen])
            if reply.status in DECISIVE:
                self.first = reply
        return self.first

    async def follow(self, timeout_s: float) -> AsyncIterator[SessionReply]:
        """The events after `first` until a terminal one (none if `first` was terminal);
        raises `TimeoutError` when the session has not ended within `timeout_s`."""
        if self.first is not None and self.first.is_terminal:
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            reply = await self._next(deadline)
            if reply is None:
                raise TimeoutError(f"{self.session_id} did not end within {timeout_s:g} s")
            yield reply
            if reply.is_terminal:
                return

    async def aclose(self) -> None:
        """Close the reply channel (idempotent): later events are dropped by the broker."""
        if not self._channel.is_closed:
            await self._channel.close()


@asynccontextmanager
async def open_session(
    connection: AbstractConnection,
    job: SessionJob | dict[str, Any],
    *,
    timeout_s: float = 60.0,
    correlation_id: str | None = None,
    topology: Topology | None = None,
) -> AsyncIterator[SessionCall]:
    """Publish `job` with `reply_to` = direct reply-to and wait for its decisive event.

    Yields the call with `first` set; follow later events inside the block. Raises
    `pydantic.ValidationError` before sending a job that breaks the contract, `NoReplyError`
    after `timeout_s` without a decisive event.
    """
    model = job if isinstance(job, SessionJob) else SessionJob.model_validate(job)
    channel = await connection.channel(publisher_confirms=True)
    call = SessionCall(channel, model.session_id, correlation_id or uuid.uuid4().hex)
    try:
        channel.close_callbacks.add(call._on_close)
        replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await replies.consume(call._on_reply, no_ack=True)  # before the publish: the broker's rule
        await publish_session_job(
            channel,
            model,
            reply_to=DIRECT_REPLY_TO,
            correlation_id=call.correlation_id,
            topology=topology,
        )
        await call.wait_first(timeout_s)
        yield call
    finally:
        channel.close_callbacks.discard(call._on_close)
        await call.aclose()


async def request_session(
    connection: AbstractConnection,
    job: SessionJob | dict[str, Any],
    *,
    timeout_s: float = 60.0,
    correlation_id: str | None = None,
    topology: Topology | None = None,
) -> SessionReply:
    """Publish `job` and return its `ready` event (or the `failed`/`expired` that came instead).

    The session keeps running; end it with `session.stop`. Raises `NoReplyError` after
    `timeout_s` without one of those events.
    """
    async with open_session(
        connection, job, timeout_s=timeout_s, correlation_id=correlation_id, topology=topology
    ) as call:
        assert call.first is not None
        return call.first


__all__ = [
    "DIRECT_REPLY_TO",
    "NoReplyError",
    "ReplyChannelClosed",
    "SessionCall",
    "SessionReply",
    "open_session",
    "request_session",
]
