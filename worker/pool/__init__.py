"""One process per pipecat_daily session, from a warm pool (see `ProcessPool`)."""

from worker.pool.errors import ChildFailed, PoolError, PoolUnavailable
from worker.pool.pool import ProcessPool, child_env
from worker.pool.process import ChildOptions, ChildProcess
from worker.pool.protocol import ChildOutcome, Ended, Failed, spec_from_dict, spec_to_dict

__all__ = [
    "ChildFailed",
    "ChildOptions",
    "ChildOutcome",
    "ChildProcess",
    "Ended",
    "Failed",
    "PoolError",
    "PoolUnavailable",
    "ProcessPool",
    "child_env",
    "spec_from_dict",
    "spec_to_dict",
]
