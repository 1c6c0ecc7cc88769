"""Start-up failures, as an operator meets them: one line naming what to fix and an exit code,
never a traceback."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest

from tests.worker.harness import Harness

pytestmark = pytest.mark.broker


async def run_worker(
    h: Harness, env: dict[str, str], cwd: Path, timeout_s: float = 60
) -> tuple[int, list[str]]:
    """`avatar-worker run` in `cwd` with `env`; (exit code, stderr lines)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        "run",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, err.decode().splitlines()


def own_lines(lines: list[str]) -> list[str]:
    """What the worker printed itself (its log records are JSON lines)."""
    return [line for line in lines if line and not line.startswith("{")]


def project_path(env: dict[str, str]) -> dict[str, str]:
    """`env` with the project importable from another working directory."""
    root = str(Path(__file__).resolve().parents[2])
    return {**env, "PYTHONPATH": root}


async def test_a_taken_status_port_is_one_line_naming_worker_status_port(
    h: Harness, tmp_path: Path
) -> None:
    """A second worker on a host whose status port is taken exits 78 with one line naming
    WORKER_STATUS_PORT, not a traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = project_path(h.env(worker_status_port=port, worker_warm_processes=0))
        code, lines = await run_worker(h, env, tmp_path)
    assert code == 78
    mine = own_lines(lines)
    assert len(mine) == 1, lines
    assert mine[0].startswith(f"error: WORKER_STATUS_PORT={port} cannot be used")
    assert "or 0 for any free port" in mine[0]
    assert not any("Traceback" in line for line in lines)


async def test_status_port_zero_picks_a_free_port_and_logs_it(h: Harness) -> None:
    """WORKER_STATUS_PORT=0 starts on a free port and the worker's start line says which."""
    proc = await h.spawn_worker_process(worker_status_port=0, worker_warm_processes=0)
    started = next(
        json.loads(line) for line in h.stderr_lines[proc.pid] if "worker.started" in line
    )
    assert isinstance(started["status_port"], int) and started["status_port"] > 0
    with socket.create_connection(("127.0.0.1", started["status_port"]), timeout=5):
        pass


async def test_a_setting_of_the_wrong_type_is_one_line(h: Harness, tmp_path: Path) -> None:
    """WORKER_MAX_SESSIONS=abc exits 2 with one line naming the variable, not a traceback."""
    env = project_path({**h.env(), "WORKER_MAX_SESSIONS": "abc"})
    code, lines = await run_worker(h, env, tmp_path)
    assert code == 2
    assert own_lines(lines) == [
        "error: invalid setting: WORKER_MAX_SESSIONS: Input should be a valid integer, unable to"
        " parse string as an integer"
    ]


async def test_an_unreadable_env_file_is_one_line(h: Harness, tmp_path: Path) -> None:
    """A `.env` that cannot be read (not UTF-8 here) exits 78 with one line naming the file."""
    (tmp_path / ".env").write_bytes(b"TAVUS_API_KEY=\xff\xfe\n")
    code, lines = await run_worker(h, project_path(h.env()), tmp_path)
    assert code == 78
    mine = own_lines(lines)
    assert len(mine) == 1, lines
    assert mine[0].startswith("error: .env cannot be read (UnicodeDecodeError")
    assert mine[0].endswith("fix it or remove it")
