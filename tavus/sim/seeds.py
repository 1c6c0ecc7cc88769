"""The stock catalogue every simulator starts with: Tavus system personas (``pipecat0`` exactly as
Tavus returns it) and replicas, including one still training and one that failed, for tests."""

from __future__ import annotations

import copy
from typing import Any

ANNA_REPLICA_ID = "r90bbd427f71"
DEFAULT_REPLICA_ID = "rfe12d8b9597"
TRAINING_REPLICA_ID = "r5e1a7c2d9b0"
ERROR_REPLICA_ID = "re7a0b1c2d3f"
PIPECAT_PERSONA_ID = "pipecat0"
SALES_COACH_PERSONA_ID = "pdced222244b"

_THUMB = "https://cdn.replica.tavus.io/thumbnails/{}.mp4"

_REPLICAS: list[dict[str, Any]] = [
    {
        "replica_id": ANNA_REPLICA_ID,
        "replica_name": "Anna",
        "training_progress": "100/100",
        "status": "completed",
        "created_at": "2025-06-02T17:40:11.512Z",
        "model_name": "phoenix-3",
    },
    {
        "replica_id": DEFAULT_REPLICA_ID,
        "replica_name": "Nathan",
        "training_progress": "100/100",
        "status": "completed",
        "created_at": "2024-08-14T09:12:45.207Z",
        "model_name": "phoenix-3",
    },
    {
        "replica_id": "r6ae5b6efc9d",
        "replica_name": "Carter",
        "training_progress": "100/100",
        "status": "completed",
        "created_at": "2024-11-05T15:03:27.880Z",
        "model_name": "phoenix-3",
    },
    {
        "replica_id": "rb67667672ad",
        "replica_name": "Gloria (greenscreen)",
        "training_progress": "100/100",
        "status": "completed",
        "created_at": "2025-02-19T11:27:03.004Z",
        "model_name": "phoenix-3",
    },
    {
        "replica_id": "r4067604db72",
        "replica_name": "Lucy",
        "training_progress": "100/100",
        "status": "completed",
        "created_at": "2026-05-28T08:00:00.000Z",
        "model_name": "phoenix-4.5",
    },
]

_USER_REPLICAS: list[dict[str, Any]] = [
    {
        "replica_id": TRAINING_REPLICA_ID,
        "replica_name": "My Replica (training)",
        "training_progress": "40/100",
        "status": "started",
        "created_at": "2026-09-20T08:30:00.000Z",
        "model_name": "phoenix-4",
    },
    {
        "replica_id": ERROR_REPLICA_ID,
        "replica_name": "My Replica (failed)",
        "training_progress": "0/100",
        "status": "error",
        "error_message": "The training video must be at least 1 minute long.",
        "created_at": "2026-09-19T10:00:00.000Z",
        "model_name": "phoenix-4",
    },
]

# The real record captured from GET /v2/personas/pipecat0 (tavus-api.md §3.2).
PIPECAT0: dict[str, Any] = {
    "persona_id": "pipecat0",
    "persona_name": "Ari",
    "pipeline_mode": "echo",
    "system_prompt": " ",
    "context": None,
    "default_replica_id": None,
    "layers": {
        "transport": {
            "room_settings": {
                "enable_chat": True,
                "start_audio_off": False,
                "start_video_off": False,
                "enable_people_ui": True,
                "enable_network_ui": True,
                "enable_noise_cancellation_ui": True,
            },
            "input_settings": {"microphone": "disabled"},
        }
    },
    "created_at": "2024-10-18T23:20:28.943Z",
    "updated_at": "2024-10-18T23:20:29.005Z",
}


def _stock_persona(
    persona_id: str, name: str, prompt: str, replica_id: str | None, created_at: str
) -> dict[str, Any]:
    return {
        "persona_id": persona_id,
        "persona_name": name,
        "pipeline_mode": "full",
        "system_prompt": prompt,
        "context": "",
        "default_replica_id": replica_id,
        "layers": {"llm": {"model": "tavus-gpt-oss"}},
        "created_at": created_at,
        "updated_at": created_at,
    }


_SYSTEM_PERSONAS: list[dict[str, Any]] = [
    PIPECAT0,
    _stock_persona(
        SALES_COACH_PERSONA_ID,
        "Sales Coach",
        "You are a sales coach who helps the user practise handling objections.",
        DEFAULT_REPLICA_ID,
        "2024-09-02T16:21:40.118Z",
    ),
    _stock_persona(
        "pe13ed370726",
        "AI Interviewer",
        "You are a structured, friendly interviewer.",
        ANNA_REPLICA_ID,
        "2025-01-15T10:04:52.360Z",
    ),
    _stock_persona(
        "p2fbd605",
        "Tavus' Personal AI",
        "You are Tavus' personal AI assistant.",
        None,
        "2024-06-11T12:00:00.000Z",
    ),
]


def stock_replicas() -> list[dict[str, Any]]:
    """Fresh copies of the seeded replicas, each with ``replica_type`` and the detail fields."""
    records: list[dict[str, Any]] = []
    for source, replica_type in [(_REPLICAS, "system"), (_USER_REPLICAS, "user")]:
        for item in source:
            record = {
                "thumbnail_video_url": _THUMB.format(item["replica_id"]),
                "updated_at": item["created_at"],
                "error_message": None,
                "replica_type": replica_type,
                **copy.deepcopy(item),
            }
            records.append(record)
    return records


def system_personas() -> list[dict[str, Any]]:
    """Fresh copies of the seeded stock personas (flat records)."""
    return copy.deepcopy(_SYSTEM_PERSONAS)
