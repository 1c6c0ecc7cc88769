"""What the session knows about its Tavus avatar, and the hooks that tell it.

Pipecat's TavusVideoService creates the Tavus conversation inside ``setup()`` and only logs a
failure (401, 402, 5xx), so we watch its HTTP calls instead: `conversation_middleware` is an
aiohttp client middleware on the session handed to TavusVideoService. It adds our
``conversation_name`` and ``properties`` to ``POST {base}/conversations`` (Pipecat sends only the
replica and persona) and records the answer in an `AvatarConnection`. `ReplicaPresenceObserver`
marks the replica present when its first video or audio frame leaves the avatar processor, then
leaves the pipeline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog
from pipecat.frames.frames import OutputImageRawFrame, SpeechOutputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameProcessor

from pipelines.config import TavusConversationOptions

log = structlog.get_logger(__name__)

_BODY_SNIPPET_CHARS = 200


def point_tavus_at(base_url: str) -> None:
    """Make Pipecat's TavusApi call ``base_url`` (e.g. ``https://tavusapi.com/v2``), process-wide.

    Pipecat hard-codes the URL as the class attribute ``TavusApi.BASE_URL`` with no constructor
    argument; a worker runs one session per process, so setting it per session is safe.
    Needs daily-python (Pipecat's Tavus module imports it).
    """
    from pipecat.transports.tavus.transport import TavusApi

    TavusApi.BASE_URL = base_url.rstrip("/")


class AvatarConnection:
    """The Tavus side of one session: conversation created or refused, replica present or not."""

    def __init__(self) -> None:
        self.conversation_id: str | None = None
        self.conversation_url: str | None = None
        self.failure_reason: str | None = None
        self.failure_retryable = False
        self.ended_conversation_ids: list[str] = []
        self.replica_present = asyncio.Event()

    def record_created(self, conversation_id: str, conversation_url: str | None) -> None:
        """Tavus created the conversation."""
        self.conversation_id = conversation_id
        self.conversation_url = conversation_url
        log.info("tavus.conversation_created", conversation_id=conversation_id)

    def record_failed(self, reason: str, *, retryable: bool) -> None:
        """Tavus did not create the conversation; ``reason`` tells the user what to do."""
        self.failure_reason = reason
        self.failure_retryable = retryable
        log.warning("tavus.conversation_failed", reason=reason)

    def record_ended(self, conversation_id: str) -> None:
        """We asked Tavus to end the conversation."""
        self.ended_conversation_ids.append(conversation_id)
        log.info("tavus.conversation_ended", conversation_id=conversation_id)

    def mark_replica_present(self) -> None:
        """The replica's first video or audio frame reached the pipeline."""
        if not self.replica_present.is_set():
            self.replica_present.set()
            log.info("tavus.replica_present", conversation_id=self.conversation_id)


def conversation_middleware(
    connection: AvatarConnection, base_url: str, options: TavusConversationOptions
) -> aiohttp.ClientMiddlewareType:
    """An aiohttp client middleware that extends and records Pipecat's Tavus conversation calls."""
    conversations_url = f"{base_url.rstrip('/')}/conversations"

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        url = str(request.url)
        if request.method != "POST" or not url.startswith(conversations_url):
            return await handler(request)
        if url == conversations_url:
            return await _create(request, handler, connection, options)
        response = await handler(request)
        ended_id = _ended_conversation_id(url, conversations_url)
        if ended_id is not None and response.status < 300:
            connection.record_ended(ended_id)
        return response

    return middleware


async def _create(
    request: aiohttp.ClientRequest,
    handler: aiohttp.ClientHandlerType,
    connection: AvatarConnection,
    options: TavusConversationOptions,
) -> aiohttp.ClientResponse:
    await _add_options(request, options)
    try:
        response = await handler(request)
    except (aiohttp.ClientError, TimeoutError) as exc:
        connection.record_failed(
            f"Tavus could not be reached to create the conversation ({type(exc).__name__})",
            retryable=True,
        )
        raise
    body = await response.read()
    if response.status >= 300:
        reason, retryable = _refusal(response.status, body)
        connection.record_failed(reason, retryable=retryable)
        return response
    created = _json_object(body)
    conversation_id = created.get("conversation_id")
    if not isinstance(conversation_id, str) or not conversation_id:
        connection.record_failed(
            "Tavus answered the create-conversation call without a conversation_id "
            f"(got {_snippet(body)!r})",
            retryable=False,
        )
        return response
    url = created.get("conversation_url")
    connection.record_created(conversation_id, url if isinstance(url, str) else None)
    return response


async def _add_options(request: aiohttp.ClientRequest, options: TavusConversationOptions) -> None:
    properties = options.properties()
    if options.conversation_name is None and not properties:
        return
    sent = request.body
    payload = _json_object(await sent.as_bytes()) if sent else {}
    if options.conversation_name is not None:
        payload["conversation_name"] = options.conversation_name
    if properties:
        existing = payload.get("properties")
        merged = dict(existing) if isinstance(existing, dict) else {}
        payload["properties"] = {**merged, **properties}
    await request.update_body(json.dumps(payload).encode())


def _ended_conversation_id(url: str, conversations_url: str) -> str | None:
    rest = url.removeprefix(conversations_url + "/")
    conversation_id, _, action = rest.partition("/")
    return conversation_id if action == "end" and conversation_id else None


def _refusal(status: int, body: bytes) -> tuple[str, bool]:
    """Why Tavus refused to create the conversation, and whether trying later may work."""
    text = _snippet(body)
    if status == 401:
        return "TAVUS_API_KEY was rejected by Tavus (401)", False
    if status == 402:
        return "the Tavus account is out of conversational credits (402)", False
    if status == 429:
        return "Tavus rate-limited the create-conversation call (429)", True
    if "concurrent" in text.lower():
        return f"the Tavus account reached its concurrent-conversation limit ({status})", True
    if status >= 500:
        return f"Tavus failed to create the conversation ({status}); try again later", True
    return f"Tavus refused to create the conversation ({status}): {text}", False


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _snippet(body: bytes) -> str:
    return body.decode("utf-8", errors="replace").strip()[:_BODY_SNIPPET_CHARS]


class ReplicaPresenceObserver(BaseObserver):
    """Marks the replica present when the avatar processor first pushes its video or audio.

    Then it removes itself (`detach_with`): Pipecat hands an observer every frame every processor
    handles, each through the observer's own queue and task, and a session moves about 30 video
    and 100 audio frames a second through nine processors.
    """

    def __init__(self, connection: AvatarConnection, avatar: FrameProcessor) -> None:
        super().__init__(observe_every_push=False)
        self._connection = connection
        self._avatar = avatar
        self._detach: Callable[[BaseObserver], Awaitable[None]] | None = None

    def detach_with(self, detach: Callable[[BaseObserver], Awaitable[None]]) -> None:
        """How to leave the pipeline once the replica is present (`PipelineWorker.remove_observer`)."""
        self._detach = detach

    async def on_push_frame(self, data: FramePushed) -> None:
        """Watch for the replica's media leaving the avatar processor."""
        if self._connection.replica_present.is_set():
            return
        if data.source is self._avatar and isinstance(
            data.frame, OutputImageRawFrame | SpeechOutputAudioRawFrame
        ):
            self._connection.mark_replica_present()
            if self._detach is not None:
                await self._detach(self)
