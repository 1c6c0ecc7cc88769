"""Follows every live Tavus conversation of this worker with one poller, not one per session.

Each interval it lists the account's active conversations (all pages); a watched conversation that
is no longer listed is confirmed with one verbose GET, and its watcher learns why it ended. Another
active conversation with a watched session's name (a create that a dead worker left in flight)
is ended, so a session never keeps two paid conversations.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from tavus.client import TavusClient
from tavus.errors import NotFoundError, ProviderError
from tavus.models import Conversation

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 30.0


class ConversationMonitor:
    """Resolves `watch(id)` futures when their conversation is no longer active."""

    def __init__(self, client: TavusClient, *, interval_s: float) -> None:
        self._client = client
        self._interval_s = interval_s
        self._watched: dict[str, asyncio.Future[Conversation | None]] = {}
        self._names: dict[str, str] = {}  # conversation name -> the watched conversation id
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def watch(
        self, conversation_id: str, name: str | None = None
    ) -> asyncio.Future[Conversation | None]:
        """A future resolved with the ended conversation (None if it vanished)."""
        if name:
            self._names[name] = conversation_id
        future = self._watched.get(conversation_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._watched[conversation_id] = future
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="conversation-monitor")
        return future

    def unwatch(self, conversation_id: str) -> None:
        for name in [n for n, cid in self._names.items() if cid == conversation_id]:
            del self._names[name]
        future = self._watched.pop(conversation_id, None)
        if future is not None and not future.done():
            future.cancel()

    @property
    def watched_count(self) -> int:
        return len(self._watched)

    async def aclose(self) -> None:
        for cid in list(self._watched):
            self.unwatch(cid)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = self._interval_s
        while self._watched:
            await asyncio.sleep(delay)
            try:
                await self._poll_once()
                delay = self._interval_s
            except ProviderError as exc:
                delay = min(delay * 2, MAX_BACKOFF_S)
                log.warning(
                    "monitor.poll_failed", code=exc.code, error=exc.message, retry_in_s=delay
                )

    async def _poll_once(self) -> None:
        if not self._watched:
            return
        active: set[str] = set()
        duplicates: list[str] = []
        async for c in self._client.iter_conversations(status="active"):
            active.add(c.conversation_id)
            owner = self._names.get(c.conversation_name or "")
            if owner is not None and owner != c.conversation_id:
                duplicates.append(c.conversation_id)
        for cid in duplicates:
            log.warning("tavus.duplicate_conversation_ended", conversation_id=cid)
            with contextlib.suppress(NotFoundError):
                await self._client.end_conversation(cid)
        for cid in [cid for cid in self._watched if cid not in active]:
            try:
                conversation: Conversation | None = await self._client.get_conversation(
                    cid, verbose=True
                )
            except NotFoundError:
                conversation = None
            if conversation is not None and conversation.status == "active":
                continue  # listed late; still running
            future = self._watched.pop(cid, None)
            if future is not None and not future.done():
                future.set_result(conversation)
