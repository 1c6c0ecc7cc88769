"""Pydantic models of the Daily v1 bodies the client reads (rooms, room pages, tokens), as
shared/reference/daily-api.md §2–4 records them; unknown fields are kept, never an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Response(BaseModel):
    """A response body: unknown fields are kept (``model_extra``), never an error."""

    model_config = ConfigDict(extra="allow")


class Room(_Response):
    """A Daily room. ``config`` holds only the properties that differ from Daily's defaults, so
    ``config.get("exp")`` is None for a room that never expires."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    api_created: bool = True
    privacy: str = "public"
    created_at: datetime | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @property
    def exp(self) -> int | None:
        """When the room stops admitting joins (Unix seconds), if it expires at all."""
        value = self.config.get("exp")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)


class RoomPage(_Response):
    """One page of ``GET /rooms``; ``total_count`` counts every live room of the domain."""

    total_count: int = 0
    data: list[Room]


class MeetingTokenReply(_Response):
    """``POST /meeting-tokens`` answers ``{"token": "<HS256 JWT>"}``."""

    token: str = Field(min_length=1)
