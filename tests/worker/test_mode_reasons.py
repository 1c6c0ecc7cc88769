"""Why pipecat_daily cannot run here: every reason, as the `fallback_reason` of an auto job."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fallback_reason_names_every_reason_pipecat_daily_cannot_run() -> None:
    """With daily-python missing and DAILY_API_KEY and the pipeline's keys unset, the auto job's
    fallback_reason names all three."""
    script = textwrap.dedent("""
        import importlib.abc, sys
        class NoDaily(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "daily" or name.startswith("daily."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
        sys.meta_path.insert(0, NoDaily())
        from worker.app import pipecat_daily_unavailable_reason
        from worker.modes import ModeResolver
        from worker.settings import Settings
        reason = pipecat_daily_unavailable_reason(Settings(_env_file=None))
        resolution = ModeResolver({"phoenix_rest": object()}, default_mode="auto",
                                  unavailable={"pipecat_daily": reason}).resolve("auto")
        print(resolution.fallback_reason)
    """)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no provider key from this shell
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    reasons = result.stdout.strip().split("; ")
    assert reasons[0] == "DAILY_API_KEY is not set"
    assert reasons[1].startswith("the pipeline's provider settings are not set: DEEPGRAM_API_KEY")
    assert reasons[2].startswith("daily-python is not installed") and "WSL" in reasons[2]
    assert len(reasons) == 3
