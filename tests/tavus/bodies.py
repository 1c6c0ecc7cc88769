"""Response bodies recorded in shared/reference/tavus-api.md, verbatim, for the contract tests."""

from __future__ import annotations

from typing import Any

CREATED_CONVERSATION: dict[str, Any] = {
    "conversation_id": "ca4301628cb9",
    "conversation_name": "Improve Sales Technique",
    "conversation_url": "https://tavus.daily.co/ca4301628cb9",
    "status": "active",
    "callback_url": "https://example.com/tavus/webhook",
    "created_at": "2025-05-13T06:42:58.291561Z",
}

ENDED_CONVERSATION: dict[str, Any] = {
    "conversation_id": "ca4301628cb9",
    "conversation_name": "Improve Sales Technique",
    "conversation_url": "https://tavus.daily.co/ca4301628cb9",
    "callback_url": "https://example.com/tavus/webhook",
    "status": "ended",
    "replica_id": "rfe12d8b9597",
    "persona_id": "pdced222244b",
    "created_at": "2025-05-13T06:42:58.291561Z",
    "updated_at": "2025-05-13T07:01:10.004211Z",
}

VERBOSE_CONVERSATION: dict[str, Any] = {
    **ENDED_CONVERSATION,
    "events": [
        {
            "event_type": "system.replica_joined",
            "message_type": "system",
            "timestamp": "2025-07-11T06:45:47.472000Z",
            "properties": {"replica_id": "rfe12d8b9597"},
        },
        {
            "event_type": "system.shutdown",
            "message_type": "system",
            "timestamp": "2025-07-11T06:48:37.564961Z",
            "properties": {
                "replica_id": "rfe12d8b9597",
                "shutdown_reason": "participant_left_timeout",
            },
        },
        {
            "event_type": "application.transcription_ready",
            "message_type": "application",
            "timestamp": "2025-07-11T06:48:37.566057Z",
            "properties": {
                "replica_id": "rfe12d8b9597",
                "transcript": [
                    {"role": "system", "content": "<system prompt>"},
                    {"role": "user", "content": "Hi."},
                    {"role": "assistant", "content": "How's it going?"},
                ],
            },
        },
    ],
}

CONVERSATION_LIST: dict[str, Any] = {
    "data": [
        {
            "conversation_id": "ca4301628cb9",
            "conversation_name": "A Meeting",
            "status": "active",
            "conversation_url": "https://tavus.daily.co/ca4301628cb9",
            "callback_url": "https://example.com/tavus/webhook",
            "replica_id": "r90bbd427f71",
            "persona_id": "pcb7a34da5fe",
            "created_at": "2025-05-13T06:42:58.291561Z",
            "updated_at": "2025-05-13T06:42:58.291561Z",
        }
    ],
    "total_count": 123,
}

CREATED_PERSONA: dict[str, Any] = {
    "persona_id": "p5317866a1b2",
    "persona_name": "Interviewer",
    "created_at": "2025-05-13T06:40:00.000Z",
}

PIPECAT0_PERSONA: dict[str, Any] = {
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

PERSONA_LIST: dict[str, Any] = {
    "data": [
        {
            "persona_id": "p5317866a1b2",
            "persona_name": "Life Coach",
            "system_prompt": "...",
            "default_replica_id": "r79e1c033f",
            "context": "...",
            "layers": {},
            "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2025-01-01T00:00:00.000Z",
        }
    ],
    "total_count": 123,
}

REPLICA_LIST: dict[str, Any] = {
    "data": [
        {
            "replica_id": "r90bbd427f71",
            "replica_name": "Anna",
            "thumbnail_video_url": "https://...",
            "training_progress": "100/100",
            "status": "completed",
            "created_at": "2024-01-24T07:14:03.327Z",
            "replica_type": "system",
        }
    ],
    "total_count": 42,
}

REPLICA: dict[str, Any] = {
    "replica_id": "r783537ef5",
    "replica_name": "My Replica",
    "thumbnail_video_url": "https://...",
    "training_progress": "100/100",
    "status": "completed",
    "created_at": "2024-01-24T07:14:03.327Z",
    "updated_at": "2024-01-24T07:14:03.327Z",
    "error_message": None,
    "replica_type": "user",
}

# Error bodies (reference §1).
INVALID_TOKEN = {"message": "Invalid access token"}
INVALID_CONVERSATION = {"error": "Invalid conversation_id"}
INVALID_PERSONA = {"error": "Invalid persona_id"}
INVALID_REPLICA = {"error": "Invalid replica_id"}
INVALID_REPLICA_UUID = {"error": "Invalid replica_uuid"}
CREATE_FAILED = {
    "error": "There was an error creating the conversation, please reach out to support at"
    " support@tavus.io!"
}
CONCURRENCY = {"message": "User has reached maximum concurrent conversations"}
OUT_OF_CREDITS = {"message": "The user is out of conversational credits"}
NO_CHANGES = {"message": "No changes were made to the persona"}
BAD_PATCH = {"message": "Invalid JSON patch format"}

HTML_404 = (
    "<!DOCTYPE html>\n<html lang=en>\n<head><meta charset=utf-8>\n<title>Error 404 (Not Found)!!1"
    "</title>\n<style>*{margin:0;padding:0}html,code{font:15px/22px arial,sans-serif}</style>"
    "</head><body><p><b>404.</b> That's an error.</p><p>The requested URL was not found.</p>"
    + "<div>padding</div>" * 50
    + "</body></html>"
)
