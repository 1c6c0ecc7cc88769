"""How conversations live and end: the replica joining, the simulated participant, the timers
(absent, left, max duration), shutdown events, and webhook delivery to ``callback_url``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from tavus.sim.clock import Clock, iso_us
from tavus.sim.state import Conversation, SimState

log = structlog.get_logger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
END_ENDPOINT_REASON = "end_conversation_endpoint_hit"
DELETED_REASON = "daily_room_has_been_deleted"


@dataclass
class WebhookDelivery:
    """One webhook POST the simulator attempted; ``status`` is None when it failed to connect."""

    url: str
    conversation_id: str
    event_type: str
    payload: dict[str, Any]
    status: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "conversation_id": self.conversation_id,
            "event_type": self.event_type,
            "status": self.status,
            "error": self.error,
        }


class Lifecycle:
    """Moves conversations through their life on the injectable clock and sends their webhooks."""

    def __init__(self, state: SimState, clock: Clock, *, replica_join_delay_s: float) -> None:
        self.state = state
        self.clock = clock
        self.replica_join_delay_s = replica_join_delay_s
        self.deliveries: list[WebhookDelivery] = []
        self._pending: list[WebhookDelivery] = []  # emitted while no delivery task runs
        self._queue: asyncio.Queue[WebhookDelivery] | None = None

    def join(self, conversation: Conversation) -> None:
        """The simulated human joins the room (ignored once the conversation has ended)."""
        if not conversation.is_active:
            return
        now_s = self.clock()
        if conversation.participant_joined_at_s is None:
            conversation.participant_joined_at_s = now_s
        conversation.is_participant_present = True
        conversation.participant_left_at_s = None

    def leave(self, conversation: Conversation) -> None:
        """The simulated human leaves; ``participant_left_timeout`` starts counting."""
        if conversation.is_participant_present:
            conversation.is_participant_present = False
            conversation.participant_left_at_s = self.clock()

    def end(self, conversation: Conversation, reason: str) -> bool:
        """End an active conversation with ``reason``; False if it had already ended."""
        if not conversation.is_active:
            return False
        now_s = self.clock()
        conversation.status = "ended"
        conversation.shutdown_reason = reason
        conversation.ended_at_s = now_s
        conversation.updated_at_s = now_s
        conversation.is_participant_present = False
        self._emit(conversation, "system.shutdown", "system", {"shutdown_reason": reason})
        transcript = self._transcript(conversation)
        self._emit(
            conversation,
            "application.transcription_ready",
            "application",
            {"transcript": transcript},
        )
        log.info(
            "sim.conversation_ended",
            conversation_id=conversation.conversation_id,
            shutdown_reason=reason,
        )
        return True

    def sweep(self) -> list[str]:
        """Let the replica join and end every conversation whose timer is due; returns ended ids."""
        ended: list[str] = []
        now_s = self.clock()
        for conversation in list(self.state.conversations.values()):
            if not conversation.is_active or conversation.is_deleted:
                continue
            if not conversation.has_replica_joined and (
                now_s >= conversation.created_at_s + self.replica_join_delay_s
            ):
                conversation.has_replica_joined = True
                self._emit(conversation, "system.replica_joined", "system", {})
            reason = self._due_reason(conversation, now_s)
            if reason is not None and self.end(conversation, reason):
                ended.append(conversation.conversation_id)
        return ended

    @staticmethod
    def _due_reason(conversation: Conversation, now_s: float) -> str | None:
        if now_s >= conversation.created_at_s + conversation.max_call_duration_s:
            return "max_call_duration"
        if conversation.participant_joined_at_s is None:
            if now_s >= conversation.created_at_s + conversation.absent_timeout_s:
                return "participant_absent_timeout"
            return None
        left_at_s = conversation.participant_left_at_s
        if left_at_s is not None and now_s >= left_at_s + conversation.left_timeout_s:
            return "participant_left_timeout"
        return None

    def say(self, conversation: Conversation, role: str, content: str) -> bool:
        """Someone in an active conversation says ``content``; it goes into its transcript."""
        if not conversation.is_active:
            return False
        conversation.utterances.append({"role": role, "content": content, "at_s": self.clock()})
        return True

    def _transcript(self, conversation: Conversation) -> list[dict[str, Any]]:
        """The documented shape: the `system` prompt first, then `{role, content, timestamp
        (Unix float), seconds_from_start}` per turn. A participant who joined and said nothing
        scripted gets the docs' short exchange (after the custom greeting, if any)."""
        persona = self.state.personas.get(conversation.persona_id or "")
        prompt = persona.data.get("system_prompt") if persona else None
        context = conversation.request.get("conversational_context")
        system = "\n\n".join(p for p in (prompt, context) if isinstance(p, str) and p)
        transcript: list[dict[str, Any]] = [{"role": "system", "content": system}]
        said = list(conversation.utterances)
        joined_s = conversation.participant_joined_at_s
        if not said and joined_s is not None:
            greeting = conversation.request.get("custom_greeting")
            script = [("assistant", greeting)] if isinstance(greeting, str) and greeting else []
            script += [("user", "Hi."), ("assistant", "Hello! How can I help you today?")]
            said = [
                {"role": role, "content": text, "at_s": joined_s + 1.5 * i}
                for i, (role, text) in enumerate(script)
            ]
        for entry in said:
            transcript.append(
                {
                    "role": entry["role"],
                    "content": entry["content"],
                    "timestamp": round(entry["at_s"], 3),
                    "seconds_from_start": round(entry["at_s"] - conversation.created_at_s, 3),
                }
            )
        return transcript

    def _emit(
        self,
        conversation: Conversation,
        event_type: str,
        message_type: str,
        properties: dict[str, Any],
    ) -> None:
        event = {
            "event_type": event_type,
            "message_type": message_type,
            "timestamp": iso_us(self.clock()),
            "properties": {"replica_id": conversation.replica_id, **properties},
        }
        conversation.events.append(event)
        url = conversation.request.get("callback_url")
        if isinstance(url, str) and url:
            payload = {
                "properties": event["properties"],
                "conversation_id": conversation.conversation_id,
                "webhook_url": url,
                "event_type": event_type,
                "message_type": message_type,
                "timestamp": event["timestamp"],
            }
            delivery = WebhookDelivery(url, conversation.conversation_id, event_type, payload)
            if self._queue is None:
                self._pending.append(delivery)
            else:
                self._queue.put_nowait(delivery)

    async def run_sweeper(self, interval_s: float) -> None:
        """Sweep forever, every ``interval_s`` seconds of real time."""
        while True:
            self.sweep()
            await asyncio.sleep(interval_s)

    async def run_webhooks(self) -> None:
        """Deliver queued webhooks in order; failures are logged and dropped."""
        queue: asyncio.Queue[WebhookDelivery] = asyncio.Queue()  # bound to this loop
        for delivery in self._pending:
            queue.put_nowait(delivery)
        self._pending.clear()
        self._queue = queue
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    delivery = await queue.get()
                    try:
                        await self._deliver(session, delivery)
                    finally:
                        queue.task_done()
        finally:
            self._queue = None
            while not queue.empty():
                self._pending.append(queue.get_nowait())

    async def _deliver(self, session: aiohttp.ClientSession, delivery: WebhookDelivery) -> None:
        try:
            async with session.post(delivery.url, json=delivery.payload) as response:
                delivery.status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "sim.webhook_failed",
                url=delivery.url,
                event_type=delivery.event_type,
                error=delivery.error,
            )
        else:
            log.info(
                "sim.webhook_delivered",
                url=delivery.url,
                event_type=delivery.event_type,
                status=delivery.status,
            )
        self.deliveries.append(delivery)

    async def drain_webhooks(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued webhook has been attempted (while the simulator runs)."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), timeout_s)

    def clear(self) -> None:
        """Forget deliveries and drop queued webhooks (used by reset)."""
        self.deliveries.clear()
        self._pending.clear()
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
