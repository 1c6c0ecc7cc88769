"""Which mode a job runs in: `auto` prefers pipecat_daily and falls back to phoenix_rest with a reason."""

from __future__ import annotations

from dataclasses import dataclass

from worker.contract import Mode, ResolvedMode
from worker.sessions.base import SessionFailure, SessionRunner


@dataclass(frozen=True)
class Resolution:
    mode: ResolvedMode
    runner: SessionRunner
    fallback_reason: str | None = None
    fallback: SessionRunner | None = None  # auto only: phoenix_rest when Daily turns out to be down


class ModeResolver:
    """Maps a job's mode (or the worker default) to a runner that can run here."""

    def __init__(
        self,
        runners: dict[ResolvedMode, SessionRunner],
        *,
        default_mode: Mode,
        unavailable: dict[ResolvedMode, str] | None = None,
    ) -> None:
        self._runners = runners
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
                return Resolution(
                    "pipecat_daily",
                    self._runners["pipecat_daily"],
                    fallback=self._runners.get("phoenix_rest"),
                )
            return Resolution(
                "phoenix_rest",
                self._require("phoenix_rest"),
                fallback_reason=self._unavailable.get("pipecat_daily"),
            )
        return Resolution(mode, self._require(mode))

    def _require(self, mode: ResolvedMode) -> SessionRunner:
        runner = self._runners.get(mode)
        if runner is None:
            reason = self._unavailable.get(mode, f"{mode} is not available")
            raise SessionFailure(
                "mode_unavailable", f"mode {mode} cannot run on this worker: {reason}"
            )
        return runner
