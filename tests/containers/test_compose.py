"""compose.yaml for real: RabbitMQ, the simulator and three workers from the images the
Dockerfile and docker/ build; the demo profile's job end to end; a worker killed; a clean stop.

The tests share one project and run in file order (the last one stops it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.containers.docker import (
    ComposeProject,
    built_image,
    docker,
    inspect,
    lines_of,
)

WORKERS = 3
HEALTHY_TIMEOUT_S = 180.0
SIGKILLED = "137"  # what a container that ignored SIGTERM until the stop timeout exits with


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """`docker-compose up -d --scale worker=3` of compose.yaml, removed (with its volume) after."""
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("")  # not the checkout's .env: the defaults a new user gets
    project = ComposeProject(
        worker_image=built_image("worker", "AVATAR_TEST_WORKER_IMAGE"),
        rabbitmq_image=built_image("rabbitmq3", "AVATAR_TEST_COMPOSE_RABBITMQ_IMAGE"),
        env_file=env_file,
    )
    project.up_at_s = time.monotonic()
    try:
        project.run("up", "-d", "--no-build", "--scale", f"worker={WORKERS}")
        print(f"\ncompose up -d: {time.monotonic() - project.up_at_s:.1f} s")
        yield project
    finally:
        project.run("down", "-v", "-t", "30", check=False)


def wait_healthy(containers: list[str], timeout_s: float = HEALTHY_TIMEOUT_S) -> dict[str, str]:
    """Each container's health once all are healthy, or as they are when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = {c: inspect(c, "{{ .State.Health.Status }}") for c in containers}
        if all(h == "healthy" for h in health.values()) or time.monotonic() > deadline:
            return health
        time.sleep(1)


def run_demo(stack: ComposeProject, stop_on: str, *options: str) -> list[str]:
    """The demo profile's `enqueue --wait`; once it prints `ready`, the session is stopped from
    the worker container `stop_on` (`avatar-worker stop`), as a user ends a call."""
    demo = stack.popen("--profile", "demo", "run", "--rm", "-T", *options, "demo")
    printed: list[str] = []
    session_id = ""
    for line in lines_of(demo):
        printed.append(line)
        if match := re.match(r"enqueued (\S+);", line):
            session_id = match.group(1)
        if line.startswith("ready") and session_id:
            if not stack.first_ready_s:
                stack.first_ready_s = time.monotonic() - stack.up_at_s
                print(f"compose up → first ready: {stack.first_ready_s:.1f} s")
            docker("exec", stop_on, "avatar-worker", "stop", session_id)
    assert demo.wait(timeout=120) == 0, "\n".join(printed)
    print("\n".join(printed))
    return printed


def statuses(printed: list[str]) -> list[str]:
    known = ("accepted", "ready", "ended", "failed", "retrying", "expired")
    return [line.split()[0] for line in printed if line.split() and line.split()[0] in known]


def test_up_brings_rabbitmq_the_simulator_and_three_healthy_workers(
    stack: ComposeProject,
) -> None:
    """After `up --scale worker=3` every worker passes the image's HEALTHCHECK (/healthz), and
    the broker and the simulator pass theirs."""
    workers = stack.containers("worker")
    assert len(workers) == WORKERS
    others = stack.containers("rabbitmq") + stack.containers("sim")
    health = wait_healthy(workers + others)
    assert set(health.values()) == {"healthy"}, health
    for worker in workers:
        assert inspect(worker, "{{ .Config.User }}") == "10001:10001"


def test_the_demo_job_goes_accepted_ready_ended(stack: ComposeProject) -> None:
    """`docker compose --profile demo run --rm demo` prints accepted, ready (with the simulator's
    conversation URL) and, once the session is stopped, ended."""
    started = time.monotonic()
    printed = run_demo(stack, stop_on=stack.containers("worker")[0])
    print(f"demo: {time.monotonic() - started:.1f} s")
    assert statuses(printed) == ["accepted", "ready", "ended"]
    ready = next(line for line in printed if line.startswith("ready"))
    assert "conversation_url=http://127.0.0.1:8090/rooms/" in ready
    assert "reason=stopped" in printed[-1]


def test_killing_one_worker_leaves_the_others_serving(stack: ComposeProject) -> None:
    """With one worker container killed (SIGKILL), the next demo job is still served end to end
    by the others."""
    killed, *alive = stack.containers("worker")
    docker("kill", killed)
    assert inspect(killed, "{{ .State.Running }}") == "false"
    printed = run_demo(stack, alive[0], "--no-deps")  # `run` would start the killed one again
    assert statuses(printed) == ["accepted", "ready", "ended"]
    assert inspect(killed, "{{ .State.Running }}") == "false"  # no restart served it


def test_a_wrong_broker_url_in_compose_gives_the_one_line_error(stack: ComposeProject) -> None:
    """A worker given an AMQP_URL nobody answers exits 69 with the one line it prints outside
    compose: the URL with its password hidden."""
    url = "amqp://guest:hunter2-secret@nowhere.invalid:5672/"
    result = stack.run(
        "run", "--rm", "--no-deps", "-T", "-e", f"AMQP_URL={url}", "worker", "run", check=False
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 69, result.stderr
    assert len(lines) == 1 and lines[0].startswith(
        "error: cannot reach RabbitMQ at amqp://guest:***@nowhere.invalid:5672/"
    )
    assert "hunter2" not in result.stdout + result.stderr


def test_stop_ends_every_service_on_sigterm(stack: ComposeProject) -> None:
    """`docker compose stop` stops every running service on SIGTERM well within the timeout:
    the workers drain (no live session) and exit 0; nothing waits to be SIGKILLed."""
    running = [
        c
        for service in ("worker", "sim", "rabbitmq")
        for c in stack.containers(service)
        if inspect(c, "{{ .State.Running }}") == "true"
    ]
    stack.run("stop", "-t", "60")
    codes = {c: inspect(c, "{{ .State.ExitCode }}") for c in running}
    assert SIGKILLED not in codes.values(), codes
    workers = set(stack.containers("worker")) & set(running)
    assert {codes[w] for w in workers} == {"0"}, codes
