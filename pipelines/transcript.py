"""The session's LLM context as a transcript source: `TimedContext` notes when each message came
in, and `entries` gives them in Tavus's transcript shape (`role`, `content`, `timestamp`)."""

from __future__ import annotations

import time
from typing import Any

from pipecat.processors.aggregators.llm_context import LLMContext, LLMContextMessage


class TimedContext(LLMContext):
    """An LLMContext that remembers the wall-clock time each message was added."""

    def __init__(self, messages: list[LLMContextMessage] | None = None) -> None:
        self._added_at: dict[int, float] = {}
        self.created_at = time.time()  # the session's start, for `seconds_from_start`
        super().__init__(messages=messages)
        self._stamp(self._messages)

    def add_message(self, message: LLMContextMessage) -> None:
        self._stamp([message])
        super().add_message(message)

    def add_messages(self, messages: list[LLMContextMessage]) -> None:
        self._stamp(messages)
        super().add_messages(messages)

    def set_messages(self, messages: list[LLMContextMessage]) -> None:
        self._stamp(messages)
        super().set_messages(messages)

    def entries(self) -> list[dict[str, Any]]:
        """Every plain message as `{role, content, timestamp}` (Unix seconds), oldest first."""
        found = []
        for message in self._messages:
            if isinstance(message, dict) and "role" in message:
                found.append(
                    {
                        "role": message["role"],
                        "content": message.get("content"),
                        "timestamp": self._added_at.get(id(message)),
                    }
                )
        return found

    def _stamp(self, messages: list[LLMContextMessage]) -> None:
        now = time.time()
        for message in messages:
            self._added_at.setdefault(id(message), now)
