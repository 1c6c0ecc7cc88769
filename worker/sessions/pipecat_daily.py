"""pipecat_daily: a private Daily room of ours and a Pipecat pipeline (TavusVideoService as the face)
run in a warm child process; the parent provisions in parallel and releases everything at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

import structlog
from pydantic import SecretStr

from pipelines.config import ProviderConfig, TavusAvatarConfig, TavusConversationOptions
from pipelines.errors import describe_error
from pipelines.factory import SessionSpec
from tavus.client import TavusClient
from tavus.daily import DailyClient, room_name_for
from tavus.errors import NotFoundError, ProviderError
from tavus.models import Persona
from tavus.resolve import PersonaResolver, resolve_replica
from worker.choices import service_choices
from worker.contract import EndReason, ResolvedMode, SessionJob, Transcript
from worker.pool import ChildFailed, ChildProcess, Ended, PoolError, ProcessPool
from worker.sessions.base import Existing, ReadyInfo, SessionFailure
from worker.sessions.character import DEFAULT_SYSTEM_PROMPT
from worker.sessions.phoenix import delete_session_conversations, lookup_by_conversation_name

log = structlog.get_logger(__name__)

ROOM_EXP_MARGIN_S = 120
CHILD_STOP_GRACE_S = 10.0
CONTRACT_REASONS: set[str] = {
    "participant_left",
    "max_duration",
    "idle",
    "stopped",
    "provider_ended",
}


def first_cause(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a failed parallel provisioning: a provider's error first."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        error = stack.pop()
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        else:
            leaves.append(error)
    return next((e for e in leaves if isinstance(e, ProviderError)), leaves[0])


class PipecatDailySession:
    """A pipeline running in a child process, in a room this worker created."""

    def __init__(
        self,
        runner: PipecatDailyRunner,
        job: SessionJob,
        child: ChildProcess,
        ready: ReadyInfo,
        room_name: str,
    ) -> None:
        self._runner = runner
        self._job = job
        self._child = child
        self.ready = ready
        self._room_name = room_name
        self._released = False

    @property
    def pid(self) -> int:
        """The session's process."""
        return self._child.pid

    async def wait_end(self) -> EndReason:
        outcome = await self._child.wait_outcome()
        if isinstance(outcome, Ended):
            reason = outcome.reason if outcome.reason in CONTRACT_REASONS else "provider_ended"
            return reason  # type: ignore[return-value]
        raise SessionFailure(outcome.code, outcome.message, retryable=False)

    async def transcript(self) -> Transcript | None:
        """What was said, from the pipeline's context; it came with the child's outcome (None
        when the process died before sending one)."""
        outcome = self._child.outcome
        sent = outcome.transcript if outcome is not None else None
        return Transcript.model_validate(sent) if sent is not None else None

    async def abandon(self) -> None:
        self._released = True
        await self._child.kill()  # the new owner has its own pipeline; ours must not talk

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        await self._runner.release(
            self._job, self._child, self._room_name, self.ready.conversation_id
        )


class PipecatDailyRunner:
    """Provisions room + tokens + persona + child in parallel, then hands the session to the child."""

    mode: ResolvedMode = "pipecat_daily"

    def __init__(
        self,
        *,
        tavus: TavusClient,
        daily: DailyClient,
        pool: ProcessPool,
        personas: PersonaResolver,
        providers: ProviderConfig,
        tavus_api_key: SecretStr,
        tavus_base_url: str,
        default_replica_id: str | None,
        privacy: Literal["private", "public"],
        name_prefix: str,
        setup_timeout_s: float,
        avatar_timeout_s: float,
        idle_timeout_s: float | None,
    ) -> None:
        self._tavus = tavus
        self._daily = daily
        self._pool = pool
        self._personas = personas
        self._providers = providers
        self._tavus_key = tavus_api_key
        self._tavus_base_url = tavus_base_url
        self._default_replica_id = default_replica_id
        self._privacy = privacy
        self._prefix = name_prefix
        self._setup_timeout_s = setup_timeout_s
        self._avatar_timeout_s = avatar_timeout_s
        self._idle_timeout_s = idle_timeout_s

    def conversation_name(self, session_id: str) -> str:
        return f"{self._prefix}{session_id}"

    async def lookup(self, job: SessionJob) -> Existing | None:
        return await lookup_by_conversation_name(
            self._tavus, self.conversation_name(job.session_id)
        )

    async def start(self, job: SessionJob, existing: Existing | None) -> PipecatDailySession:
        if existing is not None and not existing.finished:
            # A dead worker's pipeline cannot be adopted: clear its leftovers and start afresh.
            await self.cleanup(job)
        room_name = room_name_for(job.session_id, self._prefix)
        exp = int(time.time()) + job.max_duration_s + ROOM_EXP_MARGIN_S
        try:
            async with asyncio.TaskGroup() as group:
                room = group.create_task(
                    self._daily.create_room(
                        room_name, privacy=self._privacy, exp=exp, eject_at_room_exp=True
                    )
                )
                bot_token = group.create_task(
                    self._daily.create_meeting_token(
                        room_name, is_owner=True, user_name="Avatar", exp=exp
                    )
                )
                user_token = group.create_task(
                    self._daily.create_meeting_token(
                        room_name, is_owner=False, user_name=job.user_name, exp=exp
                    )
                )
                persona = group.create_task(self._persona_and_replica(job))
                child = group.create_task(self._pool.acquire(timeout_s=self._setup_timeout_s))
        except BaseException as error:
            # Failed, or cancelled (a stop, a lost claim, a forced shutdown) while provisioning:
            # a process acquired but never used is killed, and the pool replaces it; kept, it
            # would stay busy and alive until the worker stops.
            if child.done() and not child.cancelled() and child.exception() is None:
                await child.result().kill()
            if not isinstance(error, BaseExceptionGroup):
                raise
            cause = first_cause(error)
            if isinstance(cause, PoolError):
                raise SessionFailure(
                    cause.code, cause.message, retryable=cause.retryable
                ) from cause
            raise cause from None
        spec = self._spec(job, room.result().url, bot_token.result(), *persona.result())
        proc = child.result()
        try:
            await proc.start_session(
                spec,
                max_duration_s=job.max_duration_s,
                setup_timeout_s=self._setup_timeout_s,
                avatar_timeout_s=self._avatar_timeout_s,
                participant_left_timeout_s=job.participant_left_timeout_s or 0,
                transcript=bool(job.transcript),
            )
            conversation_id = await asyncio.wait_for(
                proc.wait_ready(), self._setup_timeout_s + self._avatar_timeout_s + 5
            )
        except ChildFailed as exc:
            await self.release(job, proc, room_name, None)
            raise SessionFailure(exc.code, exc.message, retryable=exc.retryable) from exc
        except (TimeoutError, asyncio.CancelledError):
            await self.release(job, proc, room_name, None)
            raise
        if conversation_id is None:  # it ended before the bot was in the room
            await self.release(job, proc, room_name, None)
            raise SessionFailure(
                "pipeline_ended_early",
                "the session's pipeline ended before the bot joined the room; see the worker logs",
                retryable=True,
            )
        log.info(
            "session.pipeline_ready",
            pid=proc.pid,
            cold_start=proc.cold_start,
            room=room_name,
            conversation_id=conversation_id,
        )
        ready = ReadyInfo(
            room_url=room.result().url,
            user_token=user_token.result(),
            conversation_id=conversation_id,
            cold_start=proc.cold_start,
        )
        return PipecatDailySession(self, job, proc, ready, room_name)

    async def release(
        self,
        job: SessionJob,
        child: ChildProcess | None,
        room_name: str,
        conversation_id: str | None,
    ) -> None:
        """Stop the child (kill it after a grace period), delete the room, end the conversation."""
        if child is not None and child.is_alive:
            child.stop("released")
            try:
                await asyncio.wait_for(child.wait_outcome(), CHILD_STOP_GRACE_S)
            except TimeoutError:
                log.warning("session.child_kill", pid=child.pid)
            await child.kill()
        results = await asyncio.gather(
            self._daily.delete_room(room_name),
            self._end_conversation(job, conversation_id),
            return_exceptions=True,
        )
        released = (
            f"Daily room {room_name}",
            f"Tavus conversation {conversation_id or '(by name)'}",
        )
        for what, result in zip(released, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "session.release_failed",
                    resource=what,
                    error=f"releasing the {what} failed: {describe_error(result)}",
                )

    async def cleanup(self, job: SessionJob) -> None:
        """Delete the room and every conversation a failed attempt left, so a retry starts clean."""
        await self._daily.delete_room(room_name_for(job.session_id, self._prefix))
        await delete_session_conversations(self._tavus, self.conversation_name(job.session_id))

    async def _end_conversation(self, job: SessionJob, conversation_id: str | None) -> None:
        ids = (
            [conversation_id]
            if conversation_id
            else [
                c.conversation_id
                for c in await self._tavus.find_conversations_by_name(
                    self.conversation_name(job.session_id), status="active"
                )
            ]
        )
        for cid in ids:
            with contextlib.suppress(NotFoundError):
                await self._tavus.end_conversation(cid)

    async def _persona_and_replica(self, job: SessionJob) -> tuple[str, str | None, str]:
        """(system prompt, persona context, replica id) — the same character in both modes."""
        persona: Persona | None = None
        prompt, context = DEFAULT_SYSTEM_PROMPT, None
        if job.persona_id:
            persona = await self._personas.get(job.persona_id)
            prompt = (persona.system_prompt or "").strip() or DEFAULT_SYSTEM_PROMPT
            context = persona.context
        elif job.persona:
            prompt, context = job.persona.system_prompt, job.persona.context
            persona = Persona.model_validate(
                {
                    "persona_id": "(the job's persona)",
                    "default_replica_id": job.persona.default_replica_id,
                }
            )
        replica = await resolve_replica(
            self._tavus,
            job_replica_id=job.replica_id,
            persona=persona,
            default_replica_id=self._default_replica_id,
        )
        return prompt, context, replica.replica_id

    def _spec(
        self,
        job: SessionJob,
        room_url: str,
        bot_token: str,
        prompt: str,
        context: str | None,
        replica_id: str,
    ) -> SessionSpec:
        options: dict[str, Any] = {
            "conversation_name": self.conversation_name(job.session_id),
            "max_call_duration_s": job.max_duration_s,
            "participant_left_timeout_s": 0,  # the bot leaves when the session ends
        }
        return SessionSpec(
            session_id=job.session_id,
            room_url=room_url,
            bot_token=SecretStr(bot_token),
            system_prompt=prompt,
            context=context,
            tavus=TavusAvatarConfig(
                api_key=self._tavus_key, base_url=self._tavus_base_url, replica_id=replica_id
            ),
            providers=self._providers,
            choices=service_choices(job),
            metadata=dict(job.metadata),
            conversational_context=job.conversational_context,
            custom_greeting=job.custom_greeting,
            language=job.language,
            idle_timeout_s=self._idle_timeout_s,
            setup_timeout_s=self._setup_timeout_s,
            conversation=TavusConversationOptions(**options),
        )
