"""A job without a persona has the same character in both modes."""

from __future__ import annotations

import pytest

from tests.worker.harness import Harness, job
from worker.sessions import pipecat_daily
from worker.sessions.character import DEFAULT_PERSONA

pytestmark = pytest.mark.broker


async def test_a_job_without_a_persona_gets_the_default_character_in_phoenix_rest(
    h: Harness,
) -> None:
    """An `auto` job without a persona that falls back to phoenix_rest talks under the persona
    whose prompt is pipecat_daily's default system prompt, created once for both sessions."""
    await h.start_worker()
    first, second = job(mode="auto"), job(mode="auto")
    for body in (first, second):
        await h.publish(body)
    ready = [await h.wait_for(b["session_id"], "ready") for b in (first, second)]
    assert {r["mode"] for r in ready} == {"phoenix_rest"}
    persona_ids = {h.sim.conversations[r["conversation_id"]].persona_id for r in ready}
    assert len(persona_ids) == 1 and None not in persona_ids
    [persona_id] = persona_ids
    persona = h.sim.personas[persona_id].data
    assert persona["system_prompt"] == pipecat_daily.DEFAULT_SYSTEM_PROMPT
    assert persona["system_prompt"] == DEFAULT_PERSONA.system_prompt
    assert len(h.sim.calls_to("POST /v2/personas")) == 1
