"""Forwards a session process's stderr into our logging (stdlib logger ``worker.child``), redacted.

The child logs JSON lines; each is re-logged at its own level with the child's pid. Anything else
(a traceback, a library's stray print) is logged as a warning. Secrets are replaced before logging.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

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


def level_of(line: str) -> int:
    """The logging level of one child line: its JSON ``level``, WARNING when not JSON."""
    if not line.startswith("{"):
        return logging.WARNING
    try:
        body = json.loads(line)
    except ValueError:
        return logging.WARNING
    level = body.get("level") if isinstance(body, dict) else None
    return _LEVELS.get(str(level).lower(), logging.INFO)


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
                "child pid=%d wrote a log line over %d bytes (dropped)", pid, LINE_LIMIT_BYTES
            )
            continue
        if not raw:
            return
        line = redact(raw.decode(errors="replace").rstrip())
        if line:
            logger.log(level_of(line), "child pid=%d %s", pid, line, extra={"child_pid": pid})
