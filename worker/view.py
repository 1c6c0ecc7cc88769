"""The worker as the status server sees it (`worker.ops.status.WorkerView`), read live from the app."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from worker.ops.status import SessionRow

if TYPE_CHECKING:
    from worker.app import WorkerApp


def package_version() -> str:
    try:
        return version("avatar-worker")
    except PackageNotFoundError:
        return "0+unknown"


class AppView:
    """Read-only answers about one running `WorkerApp`."""

    def __init__(self, app: WorkerApp) -> None:
        self._app = app
        self.version = package_version()
        self._down_since: float | None = None

    def broker_lost(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()

    def broker_back(self) -> None:
        self._down_since = None

    @property
    def worker_id(self) -> str:
        return self._app.settings.worker_id

    @property
    def is_draining(self) -> bool:
        return self._app.is_draining

    @property
    def is_full(self) -> bool:
        # Over the load gate, only pipecat_daily is closed: phoenix_rest jobs are still taken.
        return self.free_slots == 0

    @property
    def is_broker_connected(self) -> bool:
        return self._down_since is None and self._app.broker.is_connected

    @property
    def broker_down_for_s(self) -> float | None:
        if self._down_since is None:
            return None if self._app.broker.is_connected else 0.0
        return time.monotonic() - self._down_since

    @property
    def is_pool_broken(self) -> bool:
        return self._app.pool is not None and bool(self._app.pool.is_broken)

    @property
    def sessions(self) -> Sequence[SessionRow]:
        manager = self._app.sessions
        if manager is None:
            return []
        return [
            (s.job.session_id, s.route.mode, manager.age_s(s), "ready" if s.live else "starting")
            for s in manager.sessions()
        ]

    @property
    def max_sessions(self) -> int:
        return self._app.settings.worker_max_sessions

    @property
    def free_slots(self) -> int:
        return self._app.sessions.free if self._app.sessions is not None else 0

    @property
    def warm_processes(self) -> int:
        return int(self._app.pool.warm_count) if self._app.pool is not None else 0

    @property
    def modes(self) -> Mapping[str, str | None]:
        return self._app.mode_availability

    @property
    def load(self) -> float:
        return self._app.load_monitor.load if self._app.load_monitor is not None else 0.0
