"""Which mode a job runs in: `auto` prefers pipecat_daily and falls back to phoenix_rest with a
reason; while the Daily breaker (`worker.breaker`) is open, `auto` skips Daily and an explicit
pipecat_daily job is refused."""

from __future__ import annotations

from dataclasses import dataclass

from worker.breaker import DailyBreaker
from worker.contract import Mode, ResolvedMode
from worker.sessions.base import SessionFailure, SessionRunner


@dataclass(frozen=True)
class Resolution:
    mode: ResolvedMode
    runner: SessionRunner
    fallback_reason: str | None = None
    fallback: SessionRunner | None = None  # auto only: phoenix_rest when Daily turns out to be down
    is_probe: bool = False  # this start is the one the half-open Daily breaker lets try Daily


class ModeResolver:
    """Maps a job's mode (or the worker default) to a runner that can run here."""

    def __init__(
        self,
        runners: dict[ResolvedMode, SessionRunner],
        *,
        default_mode: Mode,
        unavailable: dict[ResolvedMode, str] | None = None,
        breaker: DailyBreaker | None = None,
    ) -> None:
        self._runners = runners
        self.breaker = breaker
        self._default = default_mode
        self._unavailable = dict(unavailable or {})
        for mode in ("pipecat_daily", "phoenix_rest"):
            if mode not in runners:
                self._unavailable.setdefault(mode, f"{mode} is not configured on this worker")

    def why_unavailable(self, mode: ResolvedMode) -> str | None:
        return self._unavailable.get(mode) if mode not in self._runners else None

    def resolve(self, requested: Mode | None) -> Resolution:
        mode = requested or self._default
        if mode == "auto":
            if "pipecat_daily" in self._runners:
                if self.breaker is not None and not self.breaker.admit():
                    return Resolution(
                        "phoenix_rest",
                        self._require("phoenix_rest"),
                        fallback_reason=f"{self.breaker.why_open()}; this session runs as "
                        "phoenix_rest",
                    )
                return Resolution(
                    "pipecat_daily",
                    self._runners["pipecat_daily"],
                    fallback=self._runners.get("phoenix_rest"),
                    is_probe=self._is_probing,
                )
            return Resolution(
                "phoenix_rest",
                self._require("phoenix_rest"),
                fallback_reason=self._unavailable.get("pipecat_daily"),
            )
        runner = self._require(mode)
        if mode == "pipecat_daily" and self.breaker is not None:
            if not self.breaker.admit():
                raise SessionFailure(
                    "daily_unavailable",
                    f"{self.breaker.why_open()}; send the job again after that, or with mode auto "
                    "to run it as phoenix_rest now",
                )
            return Resolution(mode, runner, is_probe=self._is_probing)
        return Resolution(mode, runner)

    @property
    def _is_probing(self) -> bool:
        return self.breaker is not None and self.breaker.state == "half_open"

    def _require(self, mode: ResolvedMode) -> SessionRunner:
        runner = self._runners.get(mode)
        if runner is None:
            reason = self._unavailable.get(mode, f"{mode} is not available")
            raise SessionFailure(
                "mode_unavailable", f"mode {mode} cannot run on this worker: {reason}"
            )
        return runner
