"""The contract models: what producers may send, the reasons they get back, the schema files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.cli import main
from worker.contract import (
    MAX_JOB_BYTES,
    EndedEvent,
    InvalidMessage,
    json_schemas,
    parse_job,
)

SCHEMAS = Path(__file__).parents[2] / "worker" / "schemas"


def test_minimal_job_gets_the_contract_defaults() -> None:
    """A job with only a session_id is valid, version 1, 1800 s long, mode left to the worker."""
    job = parse_job(b'{"session_id": "abc.DEF_1-2"}')
    assert (job.version, job.max_duration_s, job.mode, job.metadata) == (1, 1800, None, {})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"session_id": "a", "version": 2}, "unsupported contract version 2"),
        ({"session_id": "a", "version": True}, "unsupported contract version true"),
        (
            {"session_id": "a", "persona": {"persona_name": "x"}},
            "field `persona.system_prompt` is required",
        ),
        (
            {"session_id": "a", "persona": {"persona_name": "x", "system_prompt": "y", "voice": 1}},
            "unknown field `persona.voice`",
        ),
        ({"session_id": "a", "mode": "daily"}, "field `mode`"),
        ({"session_id": "a" * 65}, "field `session_id`"),
        ({"session_id": "a", "max_duration_s": 14401}, "field `max_duration_s`"),
        ({"session_id": "a", "participant_left_timeout_s": -1}, "participant_left_timeout_s"),
        ({"session_id": "a", "not_after": "yesterday"}, "field `not_after`"),
    ],
)
def test_invalid_jobs_say_which_field_and_why(body: dict[str, object], reason: str) -> None:
    """Each contract violation is refused with a one-line reason naming the field."""
    with pytest.raises(InvalidMessage) as caught:
        parse_job(json.dumps(body).encode())
    assert reason in caught.value.reason
    assert "\n" not in caught.value.reason


def test_deeply_nested_json_is_refused_without_crashing() -> None:
    """A body nested thousands deep is refused cheaply, not a RecursionError in the worker."""
    body = b'{"session_id": "a", "metadata": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert len(body) <= MAX_JOB_BYTES * 2
    with pytest.raises(InvalidMessage):
        parse_job(body[:MAX_JOB_BYTES])
    with pytest.raises(InvalidMessage, match="limit is 65536"):
        parse_job(body)


def test_events_serialise_as_rfc3339_utc() -> None:
    """Event timestamps are RFC 3339 in UTC with a Z, as the contract says."""
    from datetime import UTC, datetime

    event = EndedEvent(
        session_id="a",
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        worker_id="w",
        attempt=1,
        reason="stopped",
        duration_s=1.5,
    )
    assert json.loads(event.model_dump_json())["at"] == "2026-01-02T03:04:05.000Z"


def test_committed_schema_files_match_the_models() -> None:
    """The JSON Schemas committed for producers are the ones the code validates with."""
    for name, schema in json_schemas().items():
        committed = json.loads((SCHEMAS / name).read_text())
        assert committed == json.loads(json.dumps(schema)), f"regenerate worker/schemas/{name}"


def test_schema_command_prints_the_job_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`avatar-worker schema job` prints the job schema with its required session_id."""
    assert main(["schema", "job"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["required"] == ["session_id"]
    assert schema["additionalProperties"] is False
