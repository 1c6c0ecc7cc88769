"""Start-up failures, as an operator meets them: one line naming what to fix and an exit code,
never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.worker.harness import Harness, run_cli_once

pytestmark = pytest.mark.broker


def own_lines(stderr: str) -> list[str]:
    """What the worker printed itself (its log records are JSON lines)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


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
        code, _, err = await run_cli_once(["run"], env, cwd=tmp_path)
    assert code == 78
    mine = own_lines(err)
    assert len(mine) == 1, err
    assert mine[0].startswith(f"error: WORKER_STATUS_PORT={port} cannot be used")
    assert "or 0 for any free port" in mine[0]
    assert "Traceback" not in err


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
    code, _, err = await run_cli_once(["run"], env, cwd=tmp_path)
    assert code == 2
    assert own_lines(err) == [
        "error: invalid setting: WORKER_MAX_SESSIONS: Input should be a valid integer, unable to"
        " parse string as an integer"
    ]


async def test_an_unreadable_env_file_is_one_line(h: Harness, tmp_path: Path) -> None:
    """A `.env` that cannot be read (not UTF-8 here) exits 78 with one line naming the file."""
    (tmp_path / ".env").write_bytes(b"TAVUS_API_KEY=\xff\xfe\n")
    code, _, err = await run_cli_once(["run"], project_path(h.env()), cwd=tmp_path)
    assert code == 78
    mine = own_lines(err)
    assert len(mine) == 1, err
    assert mine[0].startswith("error: .env cannot be read (UnicodeDecodeError")
    assert mine[0].endswith("fix it or remove it")


NO_KEY = "TAVUS_API_KEY is not set: the worker cannot start Tavus sessions without it"


@pytest.mark.parametrize("where", ["environment", ".env"])
async def test_an_empty_tavus_api_key_is_the_missing_key_line(
    h: Harness, tmp_path: Path, where: str
) -> None:
    """TAVUS_API_KEY= (empty, as a compose .env or a Secret gives it) exits 1 with the one line of
    a missing key instead of starting a worker that calls Tavus without one."""
    env = project_path(h.env(worker_warm_processes=0))
    if where == "environment":
        env["TAVUS_API_KEY"] = ""
    else:
        del env["TAVUS_API_KEY"]
        (tmp_path / ".env").write_text("TAVUS_API_KEY=\n")
    code, _, err = await run_cli_once(["run"], env, cwd=tmp_path, timeout_s=30)
    assert code == 1
    assert own_lines(err) == [NO_KEY]
    assert "Traceback" not in err
