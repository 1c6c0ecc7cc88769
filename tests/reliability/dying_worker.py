"""`python -m tests.reliability.dying_worker run`: the worker, except that it SIGKILLs itself at a
chosen instant, so that a crash window is certain instead of a matter of timing.

`DYING_WORKER_WINDOW` picks the instant:
- `finish` (default): when it would mark a session's record finished — after the session's
  terminal event is confirmed, before anything records that it went out.
- `outcome`: inside the write of the session's outcome note, right after its first broker
  operation on the record queue is done, before the terminal event is published.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import aio_pika

from worker import cli
from worker.core.records import SessionRecords


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def _die(self: SessionRecords, *args: Any, **kwargs: Any) -> None:
    _kill()


def _die_inside_the_outcome_write() -> None:
    armed = False
    write_outcome = SessionRecords.write_outcome
    purge = aio_pika.Queue.purge
    publish = aio_pika.Exchange.publish

    async def armed_write_outcome(self: SessionRecords, *args: Any, **kwargs: Any) -> None:
        nonlocal armed
        armed = True
        await write_outcome(self, *args, **kwargs)

    async def purge_then_die(self: aio_pika.Queue, *args: Any, **kwargs: Any) -> Any:
        done = await purge(self, *args, **kwargs)
        if armed:
            _kill()
        return done

    async def publish_then_die(self: aio_pika.Exchange, *args: Any, **kwargs: Any) -> Any:
        done = await publish(self, *args, **kwargs)
        if armed:
            _kill()
        return done

    SessionRecords.write_outcome = armed_write_outcome  # type: ignore[method-assign]
    aio_pika.Queue.purge = purge_then_die  # type: ignore[method-assign]
    aio_pika.Exchange.publish = publish_then_die  # type: ignore[method-assign]


if os.environ.get("DYING_WORKER_WINDOW", "finish") == "outcome":
    _die_inside_the_outcome_write()
else:
    SessionRecords.finish = _die  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
