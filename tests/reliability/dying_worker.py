"""`python -m tests.reliability.dying_worker run`: the worker, except that it SIGKILLs itself the
instant it would mark a session's record finished — after the session's terminal event is
confirmed, before anything records that it went out (the window of README's F12). Dying by its
own hand there makes the window certain instead of a matter of timing.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from worker import cli
from worker.records import SessionRecords


async def _die(self: SessionRecords, *args: Any, **kwargs: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


SessionRecords.finish = _die  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
