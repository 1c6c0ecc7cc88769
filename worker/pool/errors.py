"""Errors of the session process pool; each carries a contract ``code`` and ``retryable``::

    PoolError                         code, message, retryable
    ├── ChildFailed                   the session failed before ready (the child's own code),
    │                                 or its process crashed / hung / was killed
    │                                 (worker_process_crashed | _hung | _killed)      retryable
    └── PoolUnavailable               no session process to run on:
                                      worker_process_start_failed (died or not warm in time),
                                      worker_pool_closed (the worker is shutting down)  retryable

Process-level failures are retryable: the job may well succeed in a fresh process.
"""

from __future__ import annotations

CRASHED = "worker_process_crashed"
HUNG = "worker_process_hung"
KILLED = "worker_process_killed"
START_FAILED = "worker_process_start_failed"
POOL_CLOSED = "worker_pool_closed"


class PoolError(Exception):
    """Something about a session process went wrong; ``message`` says what happened."""

    def __init__(self, code: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable

    def as_event_error(self) -> dict[str, object]:
        """The ``error`` object of a ``failed`` event."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ChildFailed(PoolError):
    """The session did not get ready: it failed in the child, or the child process died."""


class PoolUnavailable(PoolError):
    """No warm session process could be had (start failure, timeout, or the pool is closed)."""
