"""What a session process's exit means when it left no outcome: crashed, hung, or ended by us."""

from __future__ import annotations

import signal
from typing import Literal

from worker.pool.errors import CRASHED, HUNG, KILLED
from worker.pool.protocol import Failed

# Why we ended a process (None: it ended by itself).
ExitCause = Literal["hung", "killed", "lingered", "stopped"]


def exit_outcome(
    pid: int, returncode: int, cause: ExitCause | None, *, heartbeat_timeout_s: float
) -> Failed:
    """The failure reported for a session process that exited without ``ended``/``failed``."""
    if cause == "hung":
        message = (
            f"the session process (pid {pid}) stopped heartbeating for "
            f"{heartbeat_timeout_s:g}s and was killed"
        )
        return Failed(HUNG, message, retryable=True)
    if cause is not None:
        message = f"the worker ended the session process (pid {pid}, {cause})"
        return Failed(KILLED, message, retryable=True)
    message = (
        f"the session process (pid {pid}) exited without an outcome "
        f"({describe_exit(returncode)}); see the worker log"
    )
    return Failed(CRASHED, message, retryable=True)


def describe_exit(returncode: int | None) -> str:
    """``exit code 3``, ``killed by SIGKILL`` or ``still running``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
