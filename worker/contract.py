"""The session-job contract v1 (shared/CONTRACT.md): the job, the events, the stop command.

Jobs are strict: unknown fields and bad values are refused with a one-line readable reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from tavus.languages import language_name

CONTRACT_VERSION = 1
MAX_JOB_BYTES = 64 * 1024
MAX_METADATA_BYTES = 8 * 1024
MAX_METADATA_DEPTH = 32
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
DEFAULT_MAX_DURATION_S = 1800

Mode = Literal["auto", "pipecat_daily", "phoenix_rest"]
ResolvedMode = Literal["pipecat_daily", "phoenix_rest"]
EndReason = Literal[
    "participant_left",
    "max_duration",
    "idle",
    "stopped",
    "provider_ended",
    "worker_shutdown",
    "worker_lost",
]
SessionId = Annotated[str, Field(pattern=SESSION_ID_PATTERN)]


class InvalidMessage(ValueError):
    """A message that does not follow the contract; ``reason`` is one readable line."""

    def __init__(self, reason: str, *, session_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session_id = session_id


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


class PersonaDefinition(_Strict):
    """A persona described inline in the job; the worker finds or creates one per definition."""

    persona_name: str = Field(min_length=1, max_length=200)
    system_prompt: str = Field(min_length=1, max_length=32_000)
    context: str | None = Field(default=None, max_length=32_000)
    default_replica_id: str | None = Field(default=None, min_length=1, max_length=64)


CHOICE_NAME_PATTERN = r"^[A-Za-z0-9_.:/@+-]{1,128}$"
ChoiceName = Annotated[str, Field(pattern=CHOICE_NAME_PATTERN)]


class PipelineChoices(_Strict):
    """pipecat_daily: the job's picks for its pipeline, each among what the operator allows
    (`worker.choices`); phoenix_rest ignores them (the persona decides)."""

    tts_voice: ChoiceName | None = None
    llm_model: ChoiceName | None = None
    stt_model: ChoiceName | None = None
    stt_language: ChoiceName | None = None


class SessionJob(_Strict):
    """`session.start`: a request to start one avatar session."""

    version: Literal[1] = 1
    session_id: SessionId
    mode: Mode | None = None
    replica_id: str | None = Field(default=None, min_length=1, max_length=64)
    persona_id: str | None = Field(default=None, min_length=1, max_length=64)
    persona: PersonaDefinition | None = None
    conversational_context: str | None = Field(default=None, max_length=32_000)
    custom_greeting: str | None = Field(default=None, max_length=2_000)
    language: str | None = Field(default=None, min_length=1, max_length=64)
    # Absent: the worker's WORKER_DEFAULT_MAX_DURATION_S (`with_worker_defaults`, at intake).
    max_duration_s: int = Field(
        default=DEFAULT_MAX_DURATION_S,
        ge=60,
        le=14400,
        strict=True,
        description="seconds; absent: the worker's WORKER_DEFAULT_MAX_DURATION_S (default 1800)",
    )
    participant_left_timeout_s: int | None = Field(default=None, ge=0, le=14400, strict=True)
    user_name: str | None = Field(default=None, min_length=1, max_length=200)
    not_after: AwareDatetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    pipeline: PipelineChoices | None = None
    # True: the outcome (`ended`/`failed`) carries the session's transcript (`Transcript`).
    # None (absent) means false and stays out of what the worker writes (its session records),
    # so workers that predate the field still read those.
    transcript: bool | None = Field(default=None, strict=True)

    @field_validator("not_after", mode="before")
    @classmethod
    def _not_after_is_rfc3339(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an RFC 3339 timestamp string, e.g. 2026-05-01T12:00:00Z")
        return value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        """A Tavus language name or its ISO code, any case, kept as the Tavus name: the same
        language in both modes (`tavus.languages`)."""
        if value is None:
            return None
        name = language_name(value)
        if name is None:
            raise ValueError(
                f"unknown language {value[:64]!r}: use a Tavus language name (english, spanish,"
                " german, ..., multilingual) or its ISO 639-1 code (en, es, de, ...)"
            )
        return name

    @field_validator("metadata")
    @classmethod
    def _metadata_echoable(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Metadata is echoed in every event: it must be small, shallow and valid UTF-8."""
        if _depth(value) > MAX_METADATA_DEPTH:
            raise ValueError(f"is nested more than {MAX_METADATA_DEPTH} levels deep")
        try:
            encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("contains text that is not valid UTF-8 (a lone surrogate)") from None
        if len(encoded) > MAX_METADATA_BYTES:
            raise ValueError(f"is {len(encoded)} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
        return value

    def with_worker_defaults(self, *, max_duration_s: int) -> SessionJob:
        """This job with the worker's defaults for the fields its producer left out."""
        if "max_duration_s" in self.model_fields_set:
            return self
        return self.model_copy(update={"max_duration_s": max_duration_s})

    def to_body(self) -> bytes:
        """The job as a producer sends it: fields left out stay out (the worker fills them)."""
        return self.model_dump_json(exclude_none=True, exclude_unset=True).encode()

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when the job waited past its ``not_after``."""
        return self.not_after is not None and (now or datetime.now(UTC)) > self.not_after


class StopCommand(BaseModel):
    """`session.stop`: end a session wherever it runs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    session_id: SessionId
    reason: str | None = Field(default=None, max_length=500)


class EventError(BaseModel):
    """Why a session failed or is being retried."""

    code: str
    message: str
    retryable: bool


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str
    at: datetime
    worker_id: str
    attempt: int = Field(ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    mode: ResolvedMode | None = None

    @field_serializer("at")
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AcceptedEvent(_EventBase):
    status: Literal["accepted"] = "accepted"


class ReadyEvent(_EventBase):
    status: Literal["ready"] = "ready"
    room_url: str | None = None
    user_token: str | None = None
    conversation_id: str | None = None
    conversation_url: str | None = None
    fallback_reason: str | None = None


class RetryingEvent(_EventBase):
    status: Literal["retrying"] = "retrying"
    error: EventError
    delay_s: float


TRANSCRIPT_MAX_TURNS = 200
TRANSCRIPT_MAX_CHARS = 32_000  # all turns' text together; one turn's text at most 4,000
TRANSCRIPT_MAX_TURN_CHARS = 4_000


class TranscriptTurn(BaseModel):
    """One utterance: who spoke, what was said, and when (each time when the source knows it)."""

    speaker: Literal["user", "assistant"]
    text: str
    at: datetime | None = None
    seconds_from_start: float | None = None

    @field_serializer("at")
    def _rfc3339_at(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Transcript(BaseModel):
    """What was said in a session, oldest first; past the bound only the last turns are kept."""

    source: Literal["tavus", "pipeline"]
    turns: list[TranscriptTurn] = Field(default_factory=list)
    truncated: bool = False  # True: turns were dropped (the oldest) or a turn's text was cut
    dropped_turns: int = Field(default=0, ge=0)


class _OutcomeBase(_EventBase):
    # Set when the worker that published this outcome adopted the live session from another
    # one that died (phoenix_rest): the worker that ran it before. `worker_id` is the adopter.
    adopted_from: str | None = None
    # Only when the job asked for it (`transcript: true`); null when none could be had.
    transcript: Transcript | None = None


class EndedEvent(_OutcomeBase):
    status: Literal["ended"] = "ended"
    reason: EndReason
    duration_s: float


class FailedEvent(_OutcomeBase):
    status: Literal["failed"] = "failed"
    error: EventError


class ExpiredEvent(_EventBase):
    status: Literal["expired"] = "expired"
    not_after: datetime

    @field_serializer("not_after")
    def _rfc3339_not_after(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


SessionEvent = Annotated[
    AcceptedEvent | ReadyEvent | RetryingEvent | EndedEvent | FailedEvent | ExpiredEvent,
    Field(discriminator="status"),
]


def parse_job(body: bytes) -> SessionJob:
    """Parse and validate a job body, or raise InvalidMessage with a one-line reason."""
    if len(body) > MAX_JOB_BYTES:
        raise InvalidMessage(f"job body is {len(body)} bytes; the limit is {MAX_JOB_BYTES}")
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"job body is not valid JSON ({_short(exc)})") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"job body must be a JSON object, got {type(data).__name__}")
    session_id = data.get("session_id") if isinstance(data.get("session_id"), str) else None
    version = data.get("version", CONTRACT_VERSION)
    if version != CONTRACT_VERSION or isinstance(version, bool):
        raise InvalidMessage(
            f"unsupported contract version {_short_value(version)}: this worker understands "
            f"version {CONTRACT_VERSION}",
            session_id=session_id,
        )
    try:
        return SessionJob.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage(describe_validation_error(exc), session_id=session_id) from None


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """One readable line naming each bad field: "field `x`: reason"."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field `{loc}` (not in contract v1; check for a typo)")
        elif err["type"] == "missing":
            parts.append(f"field `{loc}` is required")
        else:
            parts.append(f"field `{loc}`: {err['msg']}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "invalid job: " + "; ".join(parts)


def _depth(value: object, level: int = 0) -> int:
    """How deeply lists and objects nest (iteratively bounded: stops counting past the limit)."""
    if level > MAX_METADATA_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _short(exc: BaseException) -> str:
    return str(exc)[:120]


def _short_value(value: object) -> str:
    return json.dumps(value)[:40] if not isinstance(value, str) else repr(value[:40])


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas producers and consumers can validate against."""
    from pydantic import TypeAdapter

    return {
        "job.v1.json": SessionJob.model_json_schema(),
        "event.v1.json": TypeAdapter(SessionEvent).json_schema(),
        "stop.v1.json": StopCommand.model_json_schema(),
    }
