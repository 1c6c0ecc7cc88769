"""Pydantic models of the Tavus v2 bodies as the API really sends them (see the reference, §1–4):
``{"data": [...], "total_count": N}`` pages, flat personas, lenient timestamps, unknown fields kept.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

T = TypeVar("T")


def parse_timestamp(value: Any) -> datetime | None:
    """Any timestamp Tavus sends (µs or ms ISO, no T/no zone, Unix seconds or ms) as aware UTC;
    None for blanks, placeholders such as ``"<string>"`` and anything unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return _from_unix(float(value))
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return _from_unix(float(text))
    except ValueError:
        pass
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _from_unix(seconds: float) -> datetime | None:
    if not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text_or_none(value: Any) -> Any:
    """Numbers where the docs say strings (``training_progress: 100``) become strings."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]
LooseText = Annotated[str | None, BeforeValidator(_text_or_none)]


class _Response(BaseModel):
    """A response body: unknown fields are kept (``model_extra``), never an error."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Request(BaseModel):
    """A request body: a misspelt field is an error; ``to_json`` drops unset (None) fields."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Page(_Response, Generic[T]):
    """One page of a list endpoint; ``total_count`` counts every match, not just this page."""

    data: list[T]
    total_count: int | None = None


# ---- conversations ---------------------------------------------------------------------------


class ConversationStatus:
    ACTIVE = "active"
    ENDED = "ended"
    ERROR = "error"


class ConversationEvent(_Response):
    """An entry of ``events`` (``verbose=true``), shaped like a webhook."""

    event_type: str | None = None
    message_type: str | None = None
    timestamp: Timestamp = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Conversation(_Response):
    conversation_id: str
    conversation_name: str | None = None
    conversation_url: str | None = None
    status: str | None = None
    callback_url: str | None = None
    replica_id: str | None = Field(None, validation_alias=AliasChoices("replica_id", "face_id"))
    persona_id: str | None = Field(None, validation_alias=AliasChoices("persona_id", "pal_id"))
    meeting_token: str | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    events: list[ConversationEvent] | None = None

    @property
    def is_active(self) -> bool:
        return self.status == ConversationStatus.ACTIVE

    @property
    def shutdown_reason(self) -> str | None:
        """Why Tavus ended it, from the ``system.shutdown`` event (verbose) or a top-level field."""
        for event in self.events or ():
            if event.event_type == "system.shutdown":
                reason = event.properties.get("shutdown_reason")
                return str(reason) if reason is not None else None
        extra = (self.model_extra or {}).get("shutdown_reason")
        return str(extra) if extra is not None else None


class ConversationProperties(_Request):
    max_call_duration: int | None = Field(None, ge=1)
    participant_left_timeout: int | None = Field(None, ge=0)
    participant_absent_timeout: int | None = Field(None, ge=0)
    enable_recording: bool | None = None
    recording_s3_bucket_name: str | None = None
    recording_s3_bucket_region: str | None = None
    aws_assume_role_arn: str | None = None
    enable_closed_captions: bool | None = None
    apply_greenscreen: bool | None = None
    language: str | None = None
    livekit_ws_url: str | None = None
    livekit_room_token: str | None = None


class CreateConversationRequest(_Request):
    """``POST /v2/conversations``; sends the legacy ``replica_id``/``persona_id`` names."""

    replica_id: str | None = None
    persona_id: str | None = None
    audio_only: bool | None = None
    callback_url: str | None = None
    conversation_name: str | None = None
    conversational_context: str | None = None
    custom_greeting: str | None = None
    enable_dynamic_greeting: bool | None = None
    memory_stores: list[str] | None = None
    document_ids: list[str] | None = None
    document_tags: list[str] | None = None
    document_retrieval_strategy: Literal["speed", "quality", "balanced"] | None = None
    test_mode: bool | None = None
    require_auth: bool | None = None
    max_participants: int | None = Field(None, ge=2)
    properties: ConversationProperties | None = None


# ---- personas --------------------------------------------------------------------------------


class Persona(_Response):
    persona_id: str = Field(validation_alias=AliasChoices("persona_id", "pal_id"))
    persona_name: str | None = Field(
        None, validation_alias=AliasChoices("persona_name", "pal_name")
    )
    pipeline_mode: str | None = None
    system_prompt: str | None = None
    context: str | None = None
    default_replica_id: str | None = Field(
        None, validation_alias=AliasChoices("default_replica_id", "default_face_id")
    )
    layers: dict[str, Any] | None = None
    document_ids: list[str] | None = None
    document_tags: list[str] | None = None
    objectives_id: str | None = None
    guardrails_id: str | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap_documented_envelope(cls, value: Any) -> Any:
        """The docs wrap get-persona in ``{"data": [persona]}``; the API sends it flat."""
        if isinstance(value, dict) and "persona_id" not in value and "pal_id" not in value:
            data = value.get("data")
            if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
                return data[0]
        return value


class CreatePersonaRequest(_Request):
    """``POST /v2/personas``; ``system_prompt`` is required by Tavus for ``pipeline_mode=full``."""

    persona_name: str | None = None
    system_prompt: str | None = None
    pipeline_mode: str | None = None
    context: str | None = None
    default_replica_id: str | None = None
    document_ids: list[str] | None = None
    document_tags: list[str] | None = None
    objectives_id: str | None = None
    guardrails_id: str | None = None
    layers: dict[str, Any] | None = None


class PersonaDefinition(BaseModel):
    """A job's inline ``persona`` object: one Tavus persona is reused per distinct definition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    persona_name: str = Field(min_length=1)
    system_prompt: str = Field(min_length=1)
    context: str | None = None
    default_replica_id: str | None = None

    def content_hash(self) -> str:
        """12 hex chars of the SHA-256 of the canonical JSON: stable across processes."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# ---- replicas --------------------------------------------------------------------------------


class ReplicaStatus:
    STARTED = "started"
    TRAINING = "training"
    COMPLETED = "completed"
    READY = "ready"
    ERROR = "error"
    USABLE = frozenset({COMPLETED, READY})


class Replica(_Response):
    replica_id: str = Field(validation_alias=AliasChoices("replica_id", "face_id"))
    replica_name: str | None = Field(
        None, validation_alias=AliasChoices("replica_name", "face_name")
    )
    status: str | None = None
    training_progress: LooseText = None
    error_message: str | None = None
    replica_type: str | None = None
    thumbnail_video_url: str | None = None
    model_name: str | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None

    @property
    def is_usable(self) -> bool:
        """Can join a conversation: ``completed`` (API) or ``ready`` (webhook vocabulary)."""
        return (self.status or "").lower() in ReplicaStatus.USABLE
