"""The pipelines package without daily-python: it imports, and says why Daily cannot run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipelines.availability import daily_availability

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so the blocked import cannot leak into this test process.
WITHOUT_DAILY = """
import importlib.abc, json, sys

class NoDaily(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "daily" or name.startswith("daily."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoDaily())
import pipelines, pipelines.factory, pipelines.session, pipelines.avatar, pipelines.config
from pipelines.availability import daily_availability
from pipelines.errors import DailyUnavailableError
from pipelines.factory import daily_transport

available, reason = daily_availability()
try:
    daily_transport(None)
    raised = None
except DailyUnavailableError as exc:
    raised = exc.code
print(json.dumps({"available": available, "reason": reason, "raised": raised,
                  "daily_loaded": "daily" in sys.modules}))
"""


def test_package_imports_and_reports_daily_missing() -> None:
    """With `daily` unimportable, pipelines imports and daily_availability() explains why."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_DAILY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["available"] is False
    assert "daily-python is not installed" in result["reason"]
    assert "WSL" in result["reason"]
    assert result["raised"] == "daily_unavailable"
    assert result["daily_loaded"] is False


def test_daily_is_available_here() -> None:
    """Where daily-python is installed (this venv), daily_availability() says yes."""
    assert daily_availability() == (True, None)
