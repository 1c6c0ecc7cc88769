"""The producer-side commands, run as a user would: `enqueue --wait`, `stop`, and the demo."""

from __future__ import annotations

import asyncio

import aiormq
import pytest

from tests.worker.harness import Harness, run_cli_once

pytestmark = pytest.mark.broker


async def run_cli(
    h: Harness, *args: str, timeout_s: float = 60, module: str = "worker.cli"
) -> tuple[int, str, str]:
    """Run `python -m <module> ARGS` with the harness's settings; (exit code, stdout, stderr)."""
    return await run_cli_once(args, h.env(), timeout_s=timeout_s, module=module)


async def test_enqueue_wait_prints_the_lifecycle_and_stop_ends_it(h: Harness) -> None:
    """`enqueue --wait` prints accepted and ready live; `stop` from another shell ends it."""
    await h.start_worker()
    enqueue = asyncio.create_task(
        run_cli(
            h,
            "enqueue",
            "--session-id",
            "cli-s1",
            "--greeting",
            "Hi",
            "--wait",
            "--timeout-s",
            "30",
        )
    )
    await h.wait_for("cli-s1", "ready")
    code, out, _ = await run_cli(h, "stop", "cli-s1", "--reason", "done")
    assert code == 0 and "stop sent for cli-s1" in out
    code, out, err = await enqueue
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "enqueued cli-s1; waiting for its events"
    assert [line.split()[0] for line in lines[1:]] == ["accepted", "ready", "ended"]
    assert "conversation_url=" in lines[2] and "reason=stopped" in lines[3]


async def test_enqueue_refuses_an_invalid_job_before_sending_it(h: Harness) -> None:
    """A job that breaks the contract is refused by the CLI with the field named; nothing is sent."""
    code, _, err = await run_cli(h, "enqueue", "--session-id", "bad id!")
    assert code == 2
    assert "field `session_id`" in err
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await h.queue_depth()  # the CLI never even declared the queue


async def test_enqueue_until_ready_prints_the_join_url_and_leaves_the_session_running(
    h: Harness,
) -> None:
    """`enqueue --wait --until-ready` exits 0 at `ready` with the URL; the session goes on."""
    await h.start_worker()
    code, out, err = await run_cli(
        h, "enqueue", "--session-id", "cli-r1", "--wait", "--until-ready", "--timeout-s", "30"
    )
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["accepted", "ready"]
    assert "conversation_url=" in out
    assert h.statuses("cli-r1") == ["accepted", "ready"]
    await h.stop_session("cli-r1")
    await h.wait_for("cli-r1", "ended")


async def test_enqueue_wait_without_a_worker_says_no_event_came(h: Harness) -> None:
    """`enqueue --wait` with nobody consuming exits 1 after its timeout, saying no event came."""
    code, _, err = await run_cli(h, "enqueue", "--wait", "--timeout-s", "0.5")
    assert code == 1
    assert "no event at all" in err


async def test_enqueue_refuses_a_malformed_pipeline_choice_before_sending_it(h: Harness) -> None:
    """`enqueue --llm-model 'gpt 4o'` is refused by the CLI naming `pipeline.llm_model`."""
    code, _, err = await run_cli(h, "enqueue", "--llm-model", "gpt 4o", "--tts-voice", "v-1")
    assert code == 2
    assert "field `pipeline.llm_model`" in err
