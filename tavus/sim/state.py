"""The simulator's in-memory world: conversations, personas, replicas and Daily rooms, with the
JSON each provider returns for them. Handlers and the lifecycle mutate it; nothing here does I/O."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from tavus.sim import seeds
from tavus.sim.clock import iso_daily, iso_us

DEFAULT_ABSENT_TIMEOUT_S = 300.0
DEFAULT_LEFT_TIMEOUT_S = 0.0
DEFAULT_MAX_CALL_DURATION_S = 3600.0
USABLE_REPLICA_STATUSES = frozenset({"completed", "ready"})


def new_tavus_id(prefix: str) -> str:
    """A Tavus-looking id: one letter and 11 hex chars (``c0a1b2c3d4e5``)."""
    return prefix + secrets.token_hex(6)[:11]


def _seconds(properties: dict[str, Any], name: str, default: float) -> float:
    value = properties.get(name)
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


@dataclass
class Conversation:
    """One Tavus conversation as the simulator tracks it, including the simulated participant."""

    conversation_id: str
    conversation_url: str
    replica_id: str
    persona_id: str | None
    created_at_s: float
    request: dict[str, Any]
    test_mode: bool = False
    status: str = "active"
    updated_at_s: float = 0.0
    meeting_token: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    shutdown_reason: str | None = None
    ended_at_s: float | None = None
    has_replica_joined: bool = False
    participant_joined_at_s: float | None = None
    participant_left_at_s: float | None = None
    is_participant_present: bool = False
    is_deleted: bool = False
    # What was said (`{role, content, at_s}`), for the transcript Tavus posts at the end.
    utterances: list[dict[str, Any]] = field(default_factory=list)

    @property
    def properties(self) -> dict[str, Any]:
        value = self.request.get("properties")
        return value if isinstance(value, dict) else {}

    @property
    def absent_timeout_s(self) -> float:
        return _seconds(self.properties, "participant_absent_timeout", DEFAULT_ABSENT_TIMEOUT_S)

    @property
    def left_timeout_s(self) -> float:
        return _seconds(self.properties, "participant_left_timeout", DEFAULT_LEFT_TIMEOUT_S)

    @property
    def max_call_duration_s(self) -> float:
        return _seconds(self.properties, "max_call_duration", DEFAULT_MAX_CALL_DURATION_S)

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def to_create_json(self) -> dict[str, Any]:
        """The documented create response (§2.1), nothing more."""
        body: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            "conversation_name": self.request.get("conversation_name"),
            "conversation_url": self.conversation_url,
            "status": self.status,
            "callback_url": self.request.get("callback_url"),
            "created_at": iso_us(self.created_at_s),
        }
        if self.meeting_token is not None:
            body["meeting_token"] = self.meeting_token
        return body

    def to_json(self, *, verbose: bool = False) -> dict[str, Any]:
        """The get/list record (§2.3); ``verbose`` adds the events array."""
        body: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            "conversation_name": self.request.get("conversation_name"),
            "conversation_url": self.conversation_url,
            "callback_url": self.request.get("callback_url"),
            "status": self.status,
            "replica_id": self.replica_id,
            "persona_id": self.persona_id,
            "created_at": iso_us(self.created_at_s),
            "updated_at": iso_us(self.updated_at_s or self.created_at_s),
        }
        if verbose:
            body["events"] = [dict(event) for event in self.events]
        return body

    def to_dump(self) -> dict[str, Any]:
        """Everything the simulator knows, for the /_sim state dump."""
        return {
            **self.to_json(verbose=True),
            "request": self.request,
            "test_mode": self.test_mode,
            "shutdown_reason": self.shutdown_reason,
            "has_replica_joined": self.has_replica_joined,
            "is_participant_present": self.is_participant_present,
            "participant_joined_at_s": self.participant_joined_at_s,
            "participant_left_at_s": self.participant_left_at_s,
            "ended_at_s": self.ended_at_s,
            "is_deleted": self.is_deleted,
        }


@dataclass
class Persona:
    """A persona: its flat record exactly as GET returns it, and whether it is stock (system)."""

    data: dict[str, Any]
    persona_type: str = "user"

    @property
    def persona_id(self) -> str:
        return str(self.data["persona_id"])


@dataclass
class Room:
    """A Daily room; ``properties`` holds what the client sent, ``config`` only the non-defaults."""

    id: str
    name: str
    privacy: str
    properties: dict[str, Any]
    created_at_s: float
    seq: int

    @property
    def exp_s(self) -> float | None:
        value = self.properties.get("exp")
        return float(value) if isinstance(value, int | float) else None

    def is_expired(self, now_s: float) -> bool:
        return self.exp_s is not None and self.exp_s <= now_s

    def to_json(self, domain: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "api_created": True,
            "privacy": self.privacy,
            "url": f"https://{domain}.daily.co/{self.name}",
            "created_at": iso_daily(self.created_at_s),
            "config": room_config(self.properties),
        }


ROOM_PROPERTY_DEFAULTS: dict[str, Any] = {
    "eject_at_room_exp": False,
    "max_participants": 200,
    "enable_chat": False,
    "enable_prejoin_ui": True,
    "enable_screenshare": True,
    "start_video_off": False,
    "start_audio_off": False,
    "enforce_unique_user_ids": False,
    "enable_people_ui": True,
    "enable_emoji_reactions": False,
    "enable_hand_raising": False,
    "enable_network_ui": False,
    "enable_noise_cancellation_ui": False,
    "enable_dialout": False,
    "lang": "en",
    "geo": None,
}


def room_config(properties: dict[str, Any]) -> dict[str, Any]:
    """Daily's ``config``: only the properties that differ from the defaults."""
    return {
        name: value
        for name, value in properties.items()
        if name not in ROOM_PROPERTY_DEFAULTS or ROOM_PROPERTY_DEFAULTS[name] != value
    }


@dataclass
class SimState:
    """Everything both providers know. ``reset()`` goes back to the seeded catalogue."""

    conversations: dict[str, Conversation] = field(default_factory=dict)
    personas: dict[str, Persona] = field(default_factory=dict)
    replicas: dict[str, dict[str, Any]] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    room_seq: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.conversations.clear()
        self.rooms.clear()
        self.personas = {p["persona_id"]: Persona(p, "system") for p in seeds.system_personas()}
        self.replicas = {r["replica_id"]: r for r in seeds.stock_replicas()}

    def live_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation as the API sees it: deleted ones do not exist."""
        conversation = self.conversations.get(conversation_id)
        return None if conversation is None or conversation.is_deleted else conversation

    def active_slots(self) -> int:
        """Concurrency slots in use: non-test conversations still active."""
        return sum(
            1
            for c in self.conversations.values()
            if c.is_active and not c.test_mode and not c.is_deleted
        )

    def new_room(self, name: str, privacy: str, properties: dict[str, Any], now_s: float) -> Room:
        self.room_seq += 1
        room = Room(str(uuid.uuid4()), name, privacy, properties, float(int(now_s)), self.room_seq)
        self.rooms[name] = room
        return room

    def live_room(self, name: str, now_s: float) -> Room | None:
        room = self.rooms.get(name)
        return None if room is None or room.is_expired(now_s) else room

    def live_rooms(self, now_s: float) -> list[Room]:
        """Unexpired rooms, newest first."""
        rooms = [r for r in self.rooms.values() if not r.is_expired(now_s)]
        return sorted(rooms, key=lambda r: (r.created_at_s, r.seq), reverse=True)

    def to_dump(self, domain: str) -> dict[str, Any]:
        return {
            "conversations": [c.to_dump() for c in self.conversations.values()],
            "personas": [
                {**p.data, "persona_type": p.persona_type} for p in self.personas.values()
            ],
            "replicas": list(self.replicas.values()),
            "rooms": [r.to_json(domain) for r in self.rooms.values()],
        }
