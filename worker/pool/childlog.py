"""Forwards a session process's stderr into our logging (stdlib logger ``worker.child``), redacted.

The child logs JSON lines; each is re-logged as a record of its own: the child's event as the
event, its fields merged in (``child_pid`` added, its logger as ``child_logger``), at its level.
Anything else (a traceback, a library's stray print) is a ``child.output`` warning with the text
as ``line``. Secrets are replaced before anything is parsed or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

CHILD_LOGGER = "worker.child"
LINE_LIMIT_BYTES = 1024 * 1024

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "exception": logging.ERROR,
}
# Keys a stdlib LogRecord owns: a child field of that name is forwarded as `child_<name>`.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Fields the parent sets itself (its own timestamp and level are the ones that count).
_DROPPED = {"event", "level", "log_level", "timestamp", "logger"}


def level_of(line: str) -> int:
    """The logging level of one child line: its JSON ``level``, WARNING when not JSON."""
    parsed = _parse(line)
    if parsed is None:
        return logging.WARNING
    level = parsed.get("level", parsed.get("log_level"))
    return _LEVELS.get(str(level).lower(), logging.INFO)


def record_of(line: str, pid: int) -> tuple[int, str, dict[str, Any]]:
    """(level, event, fields) for one child line: a JSON record's own, or `child.output`."""
    parsed = _parse(line)
    if parsed is None or not isinstance(parsed.get("event"), str):
        return logging.WARNING, "child.output", {"child_pid": pid, "line": line}
    fields: dict[str, Any] = {"child_pid": pid}
    if "logger" in parsed:
        fields["child_logger"] = parsed["logger"]
    for key, value in parsed.items():
        if key not in _DROPPED:
            fields[f"child_{key}" if key in _RESERVED or key == "child_pid" else key] = value
    return level_of(line), parsed["event"], fields


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        body = json.loads(line)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def forward_stderr(
    stream: asyncio.StreamReader, pid: int, redact: Callable[[str], str]
) -> None:
    """Log every line of ``stream`` until EOF, each passed through ``redact`` first."""
    logger = logging.getLogger(CHILD_LOGGER)
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over LINE_LIMIT_BYTES: asyncio dropped it
            logger.warning(
                "child.line_dropped",
                extra={"child_pid": pid, "limit_bytes": LINE_LIMIT_BYTES},
            )
            continue
        if not raw:
            return
        line = redact(raw.decode(errors="replace").rstrip())
        if line:
            level, event, fields = record_of(line, pid)
            logger.log(level, "%s", event, extra=fields)
