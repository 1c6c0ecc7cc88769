"""The image the Dockerfile builds (on a local Debian/Python base here): who it runs as, what it
keeps out, and the one-line errors a missing or wrong setting gives, as outside a container."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.containers.docker import ROOT, built_image, clean_environment, docker, inspect

BIN = Path(sys.executable).parent
NO_KEY = "TAVUS_API_KEY is not set: the worker cannot start Tavus sessions without it"
# A broker nobody answers for (port 1 refuses at once), with a password that must stay hidden.
UNREACHABLE_URL = "amqp://guest:hunter2-secret@127.0.0.1:1/"
START_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def image() -> str:
    """The worker image, built from the real Dockerfile (reused while its inputs are unchanged)."""
    return built_image("worker", "AVATAR_TEST_WORKER_IMAGE")


def run_in_image(image: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker run --rm IMAGE` (the worker) with only `env` set, as a bare `docker run` or a
    Kubernetes pod would start it."""
    flags = [f"--env={name}={value}" for name, value in env.items()]
    return subprocess.run(
        ["docker", "run", "--rm", "--network=none", *flags, image],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_locally(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`avatar-worker run` outside a container with the same settings (and no .env)."""
    return subprocess.run(
        [str(BIN / "avatar-worker"), "run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=clean_environment() | {"WORKER_STATUS_PORT": "0"} | env,
    )


def error_lines(stderr: str) -> list[str]:
    """What the worker itself printed on stderr (library log records are JSON lines)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def test_the_image_runs_as_a_non_root_user(image: str) -> None:
    """Commands in the image run as uid 10001, not root."""
    assert inspect(image, "{{ .Config.User }}") == "10001:10001"
    uid = docker("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip()
    assert uid == "10001"


def test_the_image_keeps_no_build_secret(image: str) -> None:
    """The CA bundle pip used while building is not in the image: no PIP_CERT, no secret file."""
    env = json.loads(inspect(image, "{{ json .Config.Env }}"))
    assert not [item for item in env if item.startswith(("PIP_CERT=", "PIP_INDEX_URL="))]
    probe = docker("run", "--rm", "--entrypoint", "ls", image, "-a", "/run").stdout.split()
    assert "secrets" not in probe


def test_the_image_runs_python_3_11_with_the_pipeline(image: str) -> None:
    """The image's Python is 3.11 and the pipecat_daily pipeline (Pipecat, daily-python) imports."""
    code = "import sys, pipecat, daily; print('%d.%d' % sys.version_info[:2])"
    out = docker("run", "--rm", "--entrypoint", "python", image, "-c", code).stdout.strip()
    assert out == "3.11"


def test_a_missing_tavus_key_gives_the_same_one_line_error(image: str, tmp_path: Path) -> None:
    """Without TAVUS_API_KEY the container exits non-zero with the one line the worker prints
    outside a container."""
    env = {"AMQP_URL": UNREACHABLE_URL}
    inside, outside = run_in_image(image, env), run_locally(env, tmp_path)
    assert inside.returncode == outside.returncode != 0
    assert error_lines(inside.stderr) == error_lines(outside.stderr) == [NO_KEY]


def test_an_unreachable_broker_gives_the_same_one_line_error(image: str, tmp_path: Path) -> None:
    """With RabbitMQ unreachable the container exits 69 with one line naming the URL, password
    hidden, as outside a container."""
    env = {"TAVUS_API_KEY": "sim-tavus-key", "AMQP_URL": UNREACHABLE_URL}
    inside, outside = run_in_image(image, env), run_locally(env, tmp_path)
    assert inside.returncode == outside.returncode == 69
    assert error_lines(inside.stderr) == error_lines(outside.stderr)
    (line,) = error_lines(inside.stderr)
    assert line.startswith("error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/")
    assert "hunter2" not in inside.stderr + inside.stdout


def test_the_readme_states_the_image_size(image: str) -> None:
    """The README's image size is within a quarter of the image CI builds."""
    size_mb = int(inspect(image, "{{ .Size }}")) / 1e6
    print(f"image {image}: {size_mb:.0f} MB")
    stated = re.search(r"image is about ([\d,]+) MB", (ROOT / "README.md").read_text())
    assert stated is not None, "the README does not say 'image is about N MB'"
    assert abs(int(stated.group(1).replace(",", "")) - size_mb) <= size_mb / 4


@pytest.fixture
def broker_network(image: str) -> Iterator[str]:
    """A Docker network with a RabbitMQ container reachable as `rabbitmq`, removed after."""
    rabbitmq = built_image("rabbitmq3", "AVATAR_TEST_COMPOSE_RABBITMQ_IMAGE")
    network = f"aw-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", network)
    broker = f"{network}-rabbitmq"
    try:
        docker(
            "run",
            "-d",
            "--name",
            broker,
            "--network",
            network,
            "--network-alias",
            "rabbitmq",
            rabbitmq,
        )
        wait_for(
            lambda: docker_ok(
                "exec", broker, "rabbitmq-diagnostics", "-q", "check_port_connectivity"
            )
        )
        yield network
    finally:
        subprocess.run(["docker", "rm", "-f", broker], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def docker_ok(*args: str) -> bool:
    return subprocess.run(["docker", *args], capture_output=True, check=False).returncode == 0


def logs_of(container: str) -> str:
    logs = docker("logs", container)
    return logs.stdout + logs.stderr


def wait_for(condition: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s"
        time.sleep(0.5)


def test_the_kubernetes_prestop_hook_drains_the_worker(image: str, broker_network: str) -> None:
    """The Deployment's preStop command, run in a worker container as Kubernetes runs it, drains
    the worker with one SIGTERM: it stops taking jobs and exits 0."""
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    hook = container["lifecycle"]["preStop"]["exec"]["command"]
    worker = f"{broker_network}-worker"
    env = {
        "AMQP_URL": "amqp://guest:guest@rabbitmq:5672/",
        "TAVUS_API_KEY": "not-used-without-jobs",
        "LOG_FORMAT": "json",
    }
    flags = [f"--env={name}={value}" for name, value in env.items()]
    docker("run", "-d", "--name", worker, "--network", broker_network, *flags, image)
    try:
        wait_for(lambda: '"worker.started"' in logs_of(worker))
        subprocess.run(
            ["docker", "exec", worker, *hook], capture_output=True, timeout=120, check=False
        )
        assert docker("wait", worker).stdout.strip() == "0"
        logs = logs_of(worker)
        assert logs.count('"worker.shutdown_requested"') == 1 and '"worker.stopped"' in logs
    finally:
        subprocess.run(["docker", "rm", "-f", worker], capture_output=True, check=False)
