"""Installing the project prints nothing alarming: no setuptools warning block."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_an_editable_install_prints_no_setuptools_warning(tmp_path: Path) -> None:
    """Building the editable install scripts/demo and scripts/test make prints no "Please be
    careful with folders in your working directory" block."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for package in ("worker", "pipelines", "tavus"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("*.pyc"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "setuptools>=69", "wheel"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    out = tmp_path / "dist"
    out.mkdir()
    build = subprocess.run(
        [
            python,
            "-W",
            "always",
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_editable({str(out)!r}))",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    assert "Please be careful" not in build.stderr
    assert "BuildBackendWarning" not in build.stderr and "!!" not in build.stderr
