"""A scripted `WorkerView`: the state a test sets is what the status server reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker.ops.status import SessionRow


@dataclass
class FakeWorkerView:
    """Every field of `worker.ops.status.WorkerView`, settable; defaults are a ready worker."""

    worker_id: str = "w-test-1"
    version: str = "0.1.0"
    is_draining: bool = False
    is_full: bool = False
    is_broker_connected: bool = True
    broker_down_for_s: float | None = None
    is_pool_broken: bool = False
    sessions: Sequence[SessionRow] = ()
    max_sessions: int = 10
    free_slots: int = 10
    warm_processes: int = 2
    modes: Mapping[str, str | None] = field(
        default_factory=lambda: {"phoenix_rest": None, "pipecat_daily": "DAILY_API_KEY is not set"}
    )
    load: float = 0.12

    def run_sessions(self, *rows: SessionRow) -> None:
        """Sessions are live: slots are taken accordingly."""
        self.sessions = list(rows)
        self.free_slots = self.max_sessions - len(rows)
        self.is_full = self.free_slots == 0

    def lose_broker(self, down_for_s: float) -> None:
        self.is_broker_connected = False
        self.broker_down_for_s = down_for_s
