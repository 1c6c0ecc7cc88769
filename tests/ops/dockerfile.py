"""A small Dockerfile reader for tests: instructions with their stage, no Docker engine needed."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined
    stage: str | None  # the `AS` name of the stage it belongs to (None before the first FROM)

    def exec_form(self) -> list[str]:
        """The JSON-array form of ENTRYPOINT/CMD/HEALTHCHECK CMD; ValueError when not JSON."""
        text = self.args.split("CMD", 1)[1] if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text.strip())
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ValueError(f"{self.keyword} is not in exec form: {self.args}")
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical lines (backslash continuations joined, comments and blank lines dropped)."""
    instructions: list[Instruction] = []
    stage: str | None = None
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = " ".join((pending + stripped).split())
        pending = ""
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
        instructions.append(Instruction(keyword, args, stage))
    return instructions
