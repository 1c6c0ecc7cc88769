"""Publishing a session's events: to the events exchange as `session.<status>`, and to the job's
`reply_to` queue (with its correlation id) when it asked for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from worker.broker import Broker, BrokerError, json_message
from worker.contract import (
    AcceptedEvent,
    EndedEvent,
    EndReason,
    EventError,
    ExpiredEvent,
    FailedEvent,
    ReadyEvent,
    ResolvedMode,
    RetryingEvent,
    SessionJob,
    Transcript,
)
from worker.core.claims import SessionClaims
from worker.core.records import SessionRecord

log = structlog.get_logger(__name__)

TerminalEvent = EndedEvent | FailedEvent

PUBLISH_DEADLINE_S = 60.0  # longer than a broker restart or aio-pika's reconnect cycle
PUBLISH_RETRY_DELAY_S = 0.5


@dataclass
class EventRoute:
    """Where one session's events go, and the fields every event of it carries."""

    session_id: str
    worker_id: str
    attempt: int
    metadata: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    mode: ResolvedMode | None = None
    is_silenced: bool = False  # another worker owns the session now: publish nothing more
    adopted_from: str | None = None  # the worker that ran the session before this one adopted it

    @classmethod
    def for_job(
        cls,
        job: SessionJob,
        *,
        worker_id: str,
        attempt: int,
        reply_to: str | None,
        correlation_id: str | None,
    ) -> EventRoute:
        return cls(job.session_id, worker_id, attempt, dict(job.metadata), reply_to, correlation_id)

    @classmethod
    def from_record(cls, record: SessionRecord, *, worker_id: str) -> EventRoute:
        """The route of a session another worker ran, from its record (for a reaper or an
        adopter): the job's metadata, reply_to and correlation id, its attempt and mode."""
        return cls(
            session_id=record.session_id,
            worker_id=worker_id,
            attempt=record.attempt,
            metadata=dict(record.metadata),
            reply_to=record.reply_to,
            correlation_id=record.correlation_id,
            mode=record.mode,
        )

    def common(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "at": datetime.now(UTC),
            "worker_id": self.worker_id,
            "attempt": self.attempt,
            "metadata": self.metadata,
            "mode": self.mode,
        }


class EventPublisher:
    """Builds contract events for a route and publishes them with confirms, retrying briefly."""

    def __init__(
        self,
        broker: Broker,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        claims: SessionClaims | None = None,
    ) -> None:
        self._broker = broker
        self._on_event = on_event
        self._claims = claims

    async def accepted(self, route: EventRoute) -> None:
        await self._send(route, AcceptedEvent(**route.common()))

    async def ready(self, route: EventRoute, **fields: Any) -> None:
        await self._send(route, ReadyEvent(**route.common(), **fields))

    async def retrying(self, route: EventRoute, error: EventError, delay_s: float) -> None:
        await self._send(route, RetryingEvent(**route.common(), error=error, delay_s=delay_s))

    def ended_event(
        self,
        route: EventRoute,
        reason: EndReason,
        duration_s: float,
        transcript: Transcript | None = None,
    ) -> EndedEvent:
        return EndedEvent(
            **route.common(),
            reason=reason,
            duration_s=round(duration_s, 3),
            adopted_from=route.adopted_from,
            transcript=transcript,
        )

    def failed_event(
        self, route: EventRoute, error: EventError, transcript: Transcript | None = None
    ) -> FailedEvent:
        return FailedEvent(
            **route.common(), error=error, adopted_from=route.adopted_from, transcript=transcript
        )

    async def ended(self, route: EventRoute, reason: EndReason, duration_s: float) -> None:
        await self.publish(route, self.ended_event(route, reason, duration_s))

    async def failed(self, route: EventRoute, error: EventError) -> None:
        await self.publish(route, self.failed_event(route, error))

    async def expired(self, route: EventRoute, not_after: datetime) -> None:
        await self._send(route, ExpiredEvent(**route.common(), not_after=not_after))

    async def publish(self, route: EventRoute, event: TerminalEvent) -> bool:
        """Publish an outcome built beforehand (or restored from a session's record, for a copy);
        False when the route is silenced and nothing went out."""
        return await self._send(route, event)

    async def _send(
        self,
        route: EventRoute,
        event: AcceptedEvent | ReadyEvent | RetryingEvent | EndedEvent | FailedEvent | ExpiredEvent,
    ) -> bool:
        status = event.status
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_DEADLINE_S
        delay = PUBLISH_RETRY_DELAY_S
        while True:
            if self._claims is not None:
                # After an outage, nothing goes out until this worker knows which sessions are
                # still its own: one taken over meanwhile is silenced by then (no second `ready`
                # or outcome beside the new owner's).
                await self._claims.settled()
            if route.is_silenced:
                log.info("events.silenced", status=status, session_id=route.session_id)
                return False
            try:
                await self._publish_once(route, event)
                break
            except BrokerError as exc:
                # The broker is away (aio-pika reconnects every 5 s): wait for it, within reason.
                if loop.time() + delay > deadline:
                    raise
                log.warning(
                    "events.publish_retry",
                    status=status,
                    error=type(exc).__name__,
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.info(f"session.{status}", session_id=route.session_id, attempt=route.attempt)
        if self._on_event is not None:
            self._on_event(event.model_dump(mode="json"))
        return True

    async def _publish_once(self, route: EventRoute, event: Any) -> None:
        """To the events exchange and, concurrently, to the job's reply_to queue."""
        broker = self._broker
        message = json_message(
            event, correlation_id=route.correlation_id, message_type=f"session.{event.status}"
        )
        assert broker.events_exchange is not None
        publishes = [
            broker.publish(
                message, routing_key=f"session.{event.status}", exchange=broker.events_exchange
            )
        ]
        if route.reply_to:
            reply = json_message(
                event,
                correlation_id=route.correlation_id,
                message_type=f"session.{event.status}",
                persistent=False,
            )
            publishes.append(broker.publish(reply, routing_key=route.reply_to))
        await asyncio.gather(*publishes)
