"""The character a session has when its job names no persona: the same one in both modes.

pipecat_daily gives its LLM this system prompt; phoenix_rest runs the conversation under the
Tavus persona made from this definition (found or created once per account, as a job's inline
persona is), rather than under Tavus's own default persona, whose prompt the worker cannot know.
"""

from __future__ import annotations

from tavus.models import PersonaDefinition

DEFAULT_SYSTEM_PROMPT = "You are a friendly, concise video assistant. Keep answers short."
DEFAULT_PERSONA = PersonaDefinition(
    persona_name="avatar-worker default", system_prompt=DEFAULT_SYSTEM_PROMPT
)
