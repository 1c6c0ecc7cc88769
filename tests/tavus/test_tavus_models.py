"""The models read Tavus's inconsistent real-world bodies and write clean request bodies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tavus.models import (
    Conversation,
    ConversationProperties,
    CreateConversationRequest,
    Page,
    Persona,
    PersonaDefinition,
    Replica,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-05-13T06:42:58.291561Z", datetime(2025, 5, 13, 6, 42, 58, 291561, tzinfo=UTC)),
        ("2024-10-18T23:20:28.943Z", datetime(2024, 10, 18, 23, 20, 28, 943000, tzinfo=UTC)),
        ("2025-07-11T06:45:47.472000Z", datetime(2025, 7, 11, 6, 45, 47, 472000, tzinfo=UTC)),
        ("2024-08-28 15:27:40.824457", datetime(2024, 8, 28, 15, 27, 40, 824457, tzinfo=UTC)),
        ("2025-01-01T02:00:00+02:00", datetime(2025, 1, 1, 0, 0, tzinfo=UTC)),
        (1746000000.5, datetime(2025, 4, 30, 8, 0, 0, 500000, tzinfo=UTC)),
        (1746000000500, datetime(2025, 4, 30, 8, 0, 0, 500000, tzinfo=UTC)),
        ("1746000000", datetime(2025, 4, 30, 8, 0, tzinfo=UTC)),
        ("", None),
        ("<string>", None),
        ("   ", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        ({"x": 1}, None),
    ],
)
def test_timestamps_are_read_leniently(raw: object, expected: datetime | None) -> None:
    """µs, ms, no-T/no-zone, offsets, Unix floats and ms become aware UTC; junk becomes None."""
    parsed = parse_timestamp(raw)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() is not None


def test_request_dump_drops_unset_fields() -> None:
    """``to_json`` sends only what was set, with properties nested."""
    req = CreateConversationRequest(
        replica_id="r1",
        test_mode=True,
        properties=ConversationProperties(participant_left_timeout=0),
    )
    assert req.to_json() == {
        "replica_id": "r1",
        "test_mode": True,
        "properties": {"participant_left_timeout": 0},
    }


def test_request_typos_are_errors() -> None:
    """A misspelt request field fails at once instead of being silently dropped."""
    with pytest.raises(ValidationError):
        CreateConversationRequest.model_validate({"replicaid": "r1"})
    with pytest.raises(ValidationError):
        CreateConversationRequest(max_participants=1)


def test_pal_and_face_names_are_read_too() -> None:
    """The 2026 PAL/Face spellings fill the legacy fields."""
    persona = Persona.model_validate({"pal_id": "p1", "pal_name": "Coach", "default_face_id": "r1"})
    assert (persona.persona_id, persona.persona_name, persona.default_replica_id) == (
        "p1",
        "Coach",
        "r1",
    )
    conversation = Conversation.model_validate(
        {"conversation_id": "c1", "face_id": "r2", "pal_id": "p2"}
    )
    assert (conversation.replica_id, conversation.persona_id) == ("r2", "p2")


@pytest.mark.parametrize(
    ("status", "usable"),
    [
        ("completed", True),
        ("ready", True),
        ("READY", True),
        ("started", False),
        ("training", False),
        ("error", False),
        (None, False),
    ],
)
def test_replica_usable_means_completed_or_ready(status: str | None, usable: bool) -> None:
    """Only ``completed`` (API) and ``ready`` (webhook) replicas can join a conversation."""
    assert Replica(replica_id="r1", status=status).is_usable is usable


def test_training_progress_number_becomes_text() -> None:
    """A numeric ``training_progress`` is kept as text like the documented ``"40/100"``."""
    assert (
        Replica.model_validate({"replica_id": "r1", "training_progress": 40}).training_progress
        == "40"
    )


def test_page_keeps_total_count_optional() -> None:
    """A page without ``total_count`` still parses."""
    page = Page[Replica].model_validate({"data": [{"replica_id": "r1"}]})
    assert page.total_count is None and page.data[0].replica_id == "r1"


def test_persona_definition_hash_is_stable_and_content_based() -> None:
    """The definition hash is 12 hex chars, equal for equal content, different otherwise."""
    one = PersonaDefinition(persona_name="Coach", system_prompt="Be kind.")
    same = PersonaDefinition.model_validate({"system_prompt": "Be kind.", "persona_name": "Coach"})
    other = PersonaDefinition(persona_name="Coach", system_prompt="Be kind.", context="x")
    assert one.content_hash() == same.content_hash() == "9a7d46da969f"  # pinned across releases
    assert one.content_hash() != other.content_hash()
