"""A light install (no `pipecat` extra) publishes jobs, follows them, stops them, prints the
schemas and runs a phoenix_rest worker, importing none of Pipecat, daily-python or onnxruntime."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.worker.harness import Harness
from tests.worker.light_cli import HEAVY
from tests.worker.test_cli import run_cli

pytestmark = pytest.mark.broker

LIGHT = "tests.worker.light_cli"


async def run_light(h: Harness, *args: str) -> tuple[int, str, str]:
    return await run_cli(h, *args, module=LIGHT)


async def test_the_light_blocker_catches_an_import_of_the_extra() -> None:
    """The check can fail: a light process that imports Pipecat's modules exits with an error."""
    code = (
        "import sys; from tests.worker.light_cli import HeavyBlocker;"
        "sys.meta_path.insert(0, HeavyBlocker()); import pipelines.factory"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"light install" in err
    assert "pipecat" in HEAVY and "onnxruntime" in HEAVY and "daily" in HEAVY


async def test_schema_works_without_the_pipecat_extra(h: Harness) -> None:
    """`avatar-worker schema` prints the three JSON Schemas in a light install."""
    code, out, err = await run_light(h, "schema")
    assert code == 0, err
    assert set(json.loads(out)) == {"job.v1.json", "event.v1.json", "stop.v1.json"}


async def test_a_light_worker_runs_phoenix_rest_and_says_why_not_pipecat_daily(h: Harness) -> None:
    """A light `avatar-worker run` says it runs phoenix_rest only (the extra is missing); a light
    `enqueue --wait --until-ready` gets its `ready` from it and a light `stop` ends the session."""
    proc = await h.spawn_worker_process(module=LIGHT)
    notice = [line for line in h.stderr_lines[proc.pid] if "worker.phoenix_rest_only" in line]
    assert notice and "avatar-worker[pipecat]" in notice[0]
    code, out, err = await run_light(
        h, "enqueue", "--session-id", "light-1", "--wait", "--until-ready", "--timeout-s", "30"
    )
    assert code == 0, err
    assert "mode=phoenix_rest" in out.splitlines()[-1]
    code, _, err = await run_light(h, "stop", "light-1")
    assert code == 0, err
    await h.wait_for("light-1", "ended")
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 30) == 0, "".join(h.stderr_lines[proc.pid][-5:])
