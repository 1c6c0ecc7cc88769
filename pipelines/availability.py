"""Whether DailyTransport (and so TavusVideoService) can run in this process, and why not."""

from __future__ import annotations

import functools
import importlib
import importlib.util

PIPECAT_EXTRA_MISSING = (
    "the 'pipecat' extra is not installed (pip install 'avatar-worker[pipecat]'): "
    "this worker runs phoenix_rest sessions only"
)


def is_pipecat_installed() -> bool:
    """True when Pipecat can be found (the `pipecat` extra), without importing it."""
    try:
        return importlib.util.find_spec("pipecat") is not None
    except (ImportError, ValueError):
        return False


def daily_missing_reason() -> str | None:
    """Why daily-python (or Pipecat) is not installed here, found without importing either; None
    when both are installed (whether they work is `daily_availability`'s to say)."""
    if not is_pipecat_installed():
        return PIPECAT_EXTRA_MISSING
    try:
        spec = importlib.util.find_spec("daily")
    except ImportError as exc:
        return _not_installed(exc)
    return _not_installed(None) if spec is None else None


@functools.cache
def daily_availability() -> tuple[bool, str | None]:
    """Return ``(True, None)`` when DailyTransport can run here, else ``(False, reason)``.

    The answer is cached for the process. A missing ``daily`` package is detected without
    importing Pipecat's Daily modules (which log errors while failing); an installed one is then
    checked by importing them, which catches a daily-python that Pipecat cannot use.
    """
    missing = daily_missing_reason()
    if missing is not None:
        return False, missing
    try:
        importlib.import_module("pipecat.transports.daily.transport")
        importlib.import_module("pipecat.services.tavus.video")
    except ImportError as exc:
        return False, f"daily-python cannot be used by Pipecat ({exc}); reinstall pipecat-ai[daily]"
    return True, None


def _not_installed(exc: ImportError | None) -> str:
    detail = f" ({exc})" if exc is not None else ""
    return (
        f"daily-python is not installed{detail} (it has no Windows wheels: "
        "use Linux, macOS or WSL, or run sessions in mode phoenix_rest)"
    )
