"""A job's `language` means the same language in both modes."""

from __future__ import annotations

import json

import pytest

from pipelines.spec import language_codes
from tests.worker.harness import Harness, job
from worker.contract import InvalidMessage, parse_job


@pytest.mark.parametrize("given", ["german", "German", "de", "DE"])
def test_a_language_by_name_or_code_is_the_same_language_in_both_modes(given: str) -> None:
    """`german`, `German`, `de` and `DE` all give Tavus `german` (phoenix_rest) and the
    pipeline's speech services `de` (pipecat_daily)."""
    parsed = parse_job(json.dumps({"session_id": "s1", "language": given}).encode())
    assert parsed.language == "german"
    assert language_codes(parsed.language) == ("de", "de")


def test_multilingual_is_tavus_multilingual_and_deepgram_detection() -> None:
    """`multilingual` is Tavus's multilingual and Deepgram's `multi` (the TTS keeps its default)."""
    parsed = parse_job(b'{"session_id": "s1", "language": "multi"}')
    assert parsed.language == "multilingual"
    assert language_codes(parsed.language) == ("multi", None)


def test_an_unknown_language_is_an_invalid_job_saying_what_is_accepted() -> None:
    """A language neither mode would understand is refused with a reason naming the field."""
    with pytest.raises(InvalidMessage) as caught:
        parse_job(b'{"session_id": "s1", "language": "klingon"}')
    assert caught.value.reason.startswith("invalid job: field `language`: Value error, unknown")
    assert "'klingon'" in caught.value.reason and "ISO 639-1" in caught.value.reason


@pytest.mark.broker
async def test_phoenix_rest_sends_tavus_the_language_name_for_a_code(h: Harness) -> None:
    """A job with `language: "es"` starts a Tavus conversation in `spanish`."""
    await h.start_worker()
    body = job(language="es")
    await h.publish(body)
    await h.wait_for(body["session_id"], "ready")
    [cid] = h.created_conversations(body["session_id"])
    assert h.sim.conversations[cid].request["properties"]["language"] == "spanish"
