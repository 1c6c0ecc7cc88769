"""A session's transcript for its outcome: taken from Tavus's verbose conversation (phoenix_rest) or
from the pipeline's LLM context (pipecat_daily), scrubbed of secrets and tokens, and bounded
(the last `TRANSCRIPT_MAX_TURNS` turns and `TRANSCRIPT_MAX_CHARS` of text; `truncated` says so).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from tavus.client import TavusClient
from tavus.errors import NotFoundError, ProviderError
from tavus.models import Conversation
from worker.contract import (
    TRANSCRIPT_MAX_CHARS,
    TRANSCRIPT_MAX_TURN_CHARS,
    TRANSCRIPT_MAX_TURNS,
    Transcript,
    TranscriptTurn,
)
from worker.logs import REDACTED, REDACTOR

log = structlog.get_logger(__name__)

TRANSCRIPTION_READY = "application.transcription_ready"
SPEAKERS = ("user", "assistant")  # `system` (the whole prompt) and `tool` entries are left out
# Tavus posts the transcript within milliseconds of the shutdown; a conversation we just ended
# may not carry it yet on the first GET.
FETCH_ATTEMPTS = 4
FETCH_RETRY_DELAY_S = 0.5
FETCH_TIMEOUT_S = 20.0  # all tries together: an outcome is never held up longer for it

# Token shapes scrubbed even when they are no configured secret: JWTs (Daily meeting tokens),
# bearer tokens, and API keys that announce themselves (sk-..., key-...).
_TOKEN_PATTERNS = (
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*"),
    re.compile(r"\b(?:sk|pk|rk|key)[-_][A-Za-z0-9_-]{16,}"),
)


def scrub(text: str) -> str:
    """The text with every secret the logs redact, and anything shaped like a token, replaced."""
    text = REDACTOR.redact(text)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def from_entries(
    entries: Iterable[Mapping[str, Any]],
    source: Literal["tavus", "pipeline"],
    *,
    started_at: float | None = None,
) -> Transcript:
    """A bounded, scrubbed transcript from `{role, content[, timestamp, seconds_from_start]}`
    entries (Tavus's shape; the pipeline's context uses it too). `started_at` (epoch seconds)
    fills `seconds_from_start` where an entry has a timestamp but no offset."""
    turns = []
    for entry in entries:
        turn = _turn(entry, started_at)
        if turn is not None:
            turns.append(turn)
    return bounded(turns, source)


def bounded(turns: list[TranscriptTurn], source: Literal["tavus", "pipeline"]) -> Transcript:
    """Keep the last turns that fit the bound; mark what was dropped or cut."""
    kept: list[TranscriptTurn] = []
    total = 0
    truncated = False
    for turn in reversed(turns):
        text = turn.text
        if len(text) > TRANSCRIPT_MAX_TURN_CHARS:
            text, truncated = text[: TRANSCRIPT_MAX_TURN_CHARS - 1] + "…", True
        if len(kept) >= TRANSCRIPT_MAX_TURNS or total + len(text) > TRANSCRIPT_MAX_CHARS:
            break
        total += len(text)
        kept.append(turn if text is turn.text else turn.model_copy(update={"text": text}))
    dropped = len(turns) - len(kept)
    kept.reverse()
    return Transcript(
        source=source, turns=kept, truncated=truncated or dropped > 0, dropped_turns=dropped
    )


def from_conversation(conversation: Conversation | None) -> Transcript | None:
    """The transcript Tavus kept for a conversation (its `application.transcription_ready`
    event, or a top-level `transcript`); None when it has none yet."""
    if conversation is None:
        return None
    entries: Any = None
    for event in conversation.events or ():
        if event.event_type == TRANSCRIPTION_READY:
            entries = event.properties.get("transcript")
    if entries is None:
        entries = (conversation.model_extra or {}).get("transcript")
    if not isinstance(entries, list):
        return None
    started_at = conversation.created_at.timestamp() if conversation.created_at else None
    return from_entries(
        (e for e in entries if isinstance(e, Mapping)), "tavus", started_at=started_at
    )


async def fetch_transcript(client: TavusClient, conversation_id: str) -> Transcript | None:
    """Ask Tavus for an ended conversation's transcript (verbose GET, a few short tries while it
    is not posted yet); None when it has none or cannot be asked (logged)."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            return await _fetch(client, conversation_id)
    except TimeoutError:
        log.warning("transcript.fetch_timeout", conversation_id=conversation_id)
        return None


async def _fetch(client: TavusClient, conversation_id: str) -> Transcript | None:
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            conversation = await client.get_conversation(conversation_id, verbose=True)
        except NotFoundError:
            return None
        except ProviderError as exc:
            log.warning("transcript.fetch_failed", conversation_id=conversation_id, error=exc.code)
            return None
        transcript = from_conversation(conversation)
        if transcript is not None:
            return transcript
        if attempt < FETCH_ATTEMPTS:
            await asyncio.sleep(FETCH_RETRY_DELAY_S)
    log.warning("transcript.not_posted", conversation_id=conversation_id)
    return None


def _turn(entry: Mapping[str, Any], started_at: float | None) -> TranscriptTurn | None:
    role = entry.get("role")
    if role not in SPEAKERS:
        return None
    text = _text(entry.get("content")).strip()
    if not text:
        return None
    at = _epoch(entry.get("timestamp"))
    offset = entry.get("seconds_from_start")
    if not isinstance(offset, int | float) or isinstance(offset, bool):
        offset = None
    if offset is None and at is not None and started_at is not None:
        offset = max(at - started_at, 0.0)
    return TranscriptTurn(
        speaker=role,
        text=scrub(text),
        at=datetime.fromtimestamp(at, UTC) if at is not None else None,
        seconds_from_start=round(offset, 3) if offset is not None else None,
    )


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of an OpenAI-style content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _epoch(value: Any) -> float | None:
    """A Unix time (Tavus's float) or an ISO 8601 string as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None
