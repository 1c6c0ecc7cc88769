"""Whether DailyTransport (and so TavusVideoService) can run in this process, and why not."""

from __future__ import annotations

import functools
import importlib
import importlib.util


@functools.cache
def daily_availability() -> tuple[bool, str | None]:
    """Return ``(True, None)`` when DailyTransport can run here, else ``(False, reason)``.

    The answer is cached for the process. A missing ``daily`` package is detected without
    importing Pipecat's Daily modules (which log errors while failing); an installed one is then
    checked by importing them, which catches a daily-python that Pipecat cannot use.
    """
    try:
        spec = importlib.util.find_spec("daily")
    except ImportError as exc:
        return False, _not_installed(exc)
    if spec is None:
        return False, _not_installed(None)
    try:
        importlib.import_module("pipecat.transports.daily.transport")
        importlib.import_module("pipecat.services.tavus.video")
    except ImportError as exc:
        return False, f"daily-python cannot be used by Pipecat ({exc}); reinstall pipecat-ai[daily]"
    return True, None


def _not_installed(exc: ImportError | None) -> str:
    detail = f" ({exc})" if exc is not None else ""
    return (
        f"daily-python is not installed{detail}; it has no Windows wheels: "
        "use Linux, macOS or WSL, or run sessions in mode phoenix_rest"
    )
