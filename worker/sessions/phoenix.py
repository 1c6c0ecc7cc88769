"""phoenix_rest: a Tavus-hosted conversation (`POST /v2/conversations` with a persona) per session.

Works on every platform: the worker only calls Tavus's REST API and follows the conversation.
"""

from __future__ import annotations

import contextlib

import structlog

from tavus.client import TavusClient
from tavus.errors import NotFoundError
from tavus.models import Conversation, ConversationProperties, CreateConversationRequest, Persona
from tavus.models import PersonaDefinition as TavusPersonaDefinition
from tavus.resolve import PersonaResolver, resolve_replica
from worker.contract import EndReason, ResolvedMode, SessionJob, Transcript
from worker.sessions.base import Existing, ReadyInfo
from worker.sessions.character import DEFAULT_PERSONA
from worker.sessions.monitor import ConversationMonitor
from worker.sessions.transcript import fetch_transcript, from_conversation

log = structlog.get_logger(__name__)

# Tavus `system.shutdown` reasons (bare tokens or prose) → the contract's `ended.reason`.
SHUTDOWN_REASONS: tuple[tuple[str, EndReason], ...] = (
    ("participant_left_timeout", "participant_left"),
    ("participant_absent_timeout", "idle"),
    ("max_call_duration", "max_duration"),
)


def end_reason_from(conversation: Conversation | None) -> EndReason:
    """Map how Tavus says a conversation ended to the contract's reason."""
    reason = shutdown_reason(conversation) if conversation is not None else None
    for token, mapped in SHUTDOWN_REASONS:
        if reason and token in reason:
            return mapped
    return "provider_ended"


def shutdown_reason(conversation: Conversation) -> str | None:
    for event in conversation.events or []:
        if event.event_type == "system.shutdown":
            value = (event.properties or {}).get("shutdown_reason")
            return str(value) if value is not None else None
    return None


async def lookup_by_conversation_name(
    client: TavusClient, name: str, *, ended_pages: int = 0
) -> Existing | None:
    """A session's conversation (named after it), live or finished, or None if it never had one.

    Active conversations are few and all scanned; ended ones can be many (Tavus has no filter by
    name), so only the first `ended_pages` pages of 100 are looked at.
    """
    active = await client.find_conversations_by_name(name, status="active")
    if active:
        return Existing(finished=False, conversation_id=active[0].conversation_id)
    for page in range(1, ended_pages + 1):
        listed = await client.list_conversations(status="ended", limit=100, page=page)
        for conversation in listed.data:
            if conversation.conversation_name == name:
                return Existing(finished=True, conversation_id=conversation.conversation_id)
        if len(listed.data) < 100 or page * 100 >= (listed.total_count or 0):
            break
    return None


async def delete_session_conversations(
    client: TavusClient, name: str, *, ended_pages: int = 0
) -> list[str]:
    """End and delete every conversation a failed attempt left under the session's name, so the
    next attempt neither adopts a broken one nor takes an ended one for a finished session."""
    found = await client.find_conversations_by_name(name, status="active")
    for page in range(1, ended_pages + 1):
        listed = await client.list_conversations(status="ended", limit=100, page=page)
        found += [c for c in listed.data if c.conversation_name == name]
        if len(listed.data) < 100 or page * 100 >= (listed.total_count or 0):
            break
    for conversation in found:
        with contextlib.suppress(NotFoundError):
            if conversation.status == "active":
                await client.end_conversation(conversation.conversation_id)
            await client.delete_conversation(conversation.conversation_id)
        log.info("tavus.conversation_cleaned", conversation_id=conversation.conversation_id)
    return [c.conversation_id for c in found]


class PhoenixSession:
    """A live Tavus-hosted conversation."""

    def __init__(
        self, client: TavusClient, monitor: ConversationMonitor, conversation: Conversation
    ) -> None:
        self._client = client
        self._monitor = monitor
        self.conversation_id = conversation.conversation_id
        self._name = conversation.conversation_name
        self.ready = ReadyInfo(
            conversation_id=conversation.conversation_id,
            conversation_url=conversation.conversation_url,
        )
        self._released = False
        self._ended: Conversation | None = None  # the verbose conversation, once Tavus ended it

    async def wait_end(self) -> EndReason:
        ended = await self._monitor.watch(self.conversation_id, self._name)
        self._released = True  # Tavus ended it: nothing left to release
        self._ended = ended
        return end_reason_from(ended)

    async def transcript(self) -> Transcript | None:
        """What Tavus kept of the conversation (call it once the session is released): from the
        verbose conversation the monitor fetched, else from a verbose GET now."""
        return from_conversation(self._ended) or await fetch_transcript(
            self._client, self.conversation_id
        )

    async def abandon(self) -> None:
        self._monitor.unwatch(self.conversation_id)
        self._released = True

    async def release(self) -> None:
        self._monitor.unwatch(self.conversation_id)
        if self._released:
            return
        with contextlib.suppress(NotFoundError):
            await self._client.end_conversation(self.conversation_id)
        self._released = True
        log.info("tavus.conversation_ended", conversation_id=self.conversation_id)


class PhoenixRunner:
    """Creates and follows Tavus-hosted conversations named after their session."""

    mode: ResolvedMode = "phoenix_rest"

    def __init__(
        self,
        client: TavusClient,
        monitor: ConversationMonitor,
        personas: PersonaResolver,
        *,
        default_replica_id: str | None,
        name_prefix: str,
        dedupe_scan_pages: int = 0,
    ) -> None:
        self._scan_pages = dedupe_scan_pages
        self._client = client
        self._monitor = monitor
        self._personas = personas
        self._default_replica_id = default_replica_id
        self._prefix = name_prefix

    def conversation_name(self, session_id: str) -> str:
        return f"{self._prefix}{session_id}"

    async def lookup(self, job: SessionJob) -> Existing | None:
        return await lookup_by_conversation_name(
            self._client, self.conversation_name(job.session_id)
        )

    async def start(self, job: SessionJob, existing: Existing | None) -> PhoenixSession:
        if existing is not None and existing.conversation_id and not existing.finished:
            conversation = await self._client.get_conversation(existing.conversation_id)
            log.info("session.adopted", conversation_id=conversation.conversation_id)
            return PhoenixSession(self._client, self._monitor, conversation)
        persona = await self._persona_for(job)
        replica = await resolve_replica(
            self._client,
            job_replica_id=job.replica_id,
            persona=persona,
            default_replica_id=self._default_replica_id,
        )
        request = CreateConversationRequest(
            replica_id=replica.replica_id,
            persona_id=persona.persona_id if persona else None,
            conversation_name=self.conversation_name(job.session_id),
            conversational_context=job.conversational_context,
            custom_greeting=job.custom_greeting,
            properties=ConversationProperties(
                max_call_duration=job.max_duration_s,
                participant_left_timeout=job.participant_left_timeout_s,
                language=job.language,
            ),
        )
        conversation = await self._client.create_conversation(request)
        log.info("tavus.conversation_created", conversation_id=conversation.conversation_id)
        return PhoenixSession(self._client, self._monitor, conversation)

    async def resume(self, conversation_id: str) -> PhoenixSession | EndReason:
        """Follow a conversation another worker started (it died): the live session, or why the
        conversation ended while nobody followed it."""
        conversation = await self._client.get_conversation(conversation_id, verbose=True)
        if not conversation.is_active:
            return end_reason_from(conversation)
        return PhoenixSession(self._client, self._monitor, conversation)

    async def cleanup(self, job: SessionJob) -> None:
        """End and delete what a failed attempt left, so a retry starts clean."""
        await delete_session_conversations(
            self._client, self.conversation_name(job.session_id), ended_pages=self._scan_pages
        )

    async def _persona_for(self, job: SessionJob) -> Persona | None:
        if job.persona_id:
            return await self._personas.get(job.persona_id)
        if job.persona:
            return await self._personas.ensure(TavusPersonaDefinition(**job.persona.model_dump()))
        return await self._personas.ensure(DEFAULT_PERSONA)  # the character pipecat_daily has
