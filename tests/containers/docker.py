"""Docker for the container tests: the engine (or why there is none), the images that
scripts/docker.sh builds from local parts, and a compose project on free host ports.

Where Docker cannot run, these tests fail and say why; they never skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.brokers import docker_answers
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "docker.sh"
BUILD_TIMEOUT_S = 1800  # a first build downloads the pipeline's wheels
COMMAND_TIMEOUT_S = 300


def require_engine() -> None:
    """Fail the test, saying why and how to fix it, when no Docker engine answers."""
    problem = docker_answers()
    if problem is not None:
        pytest.fail(
            f"this test needs a Docker engine, and none answers ({problem}). scripts/test "
            "installs and starts one as root on Debian (docker.io, docker-compose); elsewhere "
            "start Docker, or set DOCKER_HOST.",
            pytrace=False,
        )


def built_image(which: str, env_name: str) -> str:
    """The image named in `env_name`, else the local one scripts/docker.sh builds (reused when
    its inputs have not changed)."""
    require_engine()
    if os.environ.get(env_name):
        return os.environ[env_name]
    build = subprocess.run(
        ["bash", str(SCRIPT), "build", which],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"scripts/docker.sh build {which} failed:\n{build.stderr[-3000:]}", False)
    name = subprocess.run(
        ["bash", str(SCRIPT), "name", which], capture_output=True, text=True, check=True
    )
    return name.stdout.strip()


def docker(*args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`, its output as text; raises when it fails."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=True
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This process's environment without any worker setting (the test run sets AMQP_URL for its
    own broker) and without COMPOSE_* variables, so only what a test passes reaches compose."""
    settings = {name.upper() for name in Settings.model_fields}
    return {
        key: value
        for key, value in os.environ.items()
        if key not in settings and not key.startswith("COMPOSE_")
    }


@dataclass
class ComposeProject:
    """One `docker-compose -p NAME` project of compose.yaml, on free host ports."""

    worker_image: str
    rabbitmq_image: str
    env_file: Path
    name: str = field(default_factory=lambda: f"aw-test-{uuid.uuid4().hex[:8]}")
    ports: dict[str, str] = field(default_factory=dict)
    up_at_s: float = 0.0  # time.monotonic() when `up` was called
    first_ready_s: float = 0.0  # from `up` to the first `ready` a demo printed

    def __post_init__(self) -> None:
        for name in ("RABBITMQ_PORT", "RABBITMQ_MANAGEMENT_PORT", "SIM_PORT"):
            self.ports[name] = str(free_port())

    def environment(self) -> dict[str, str]:
        images = {"AVATAR_WORKER_IMAGE": self.worker_image, "RABBITMQ_IMAGE": self.rabbitmq_image}
        return clean_environment() | images | self.ports

    def command(self, *args: str) -> list[str]:
        files = ["-f", str(ROOT / "compose.yaml"), "--env-file", str(self.env_file)]
        return ["docker-compose", "-p", self.name, *files, *args]

    def run(
        self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`docker-compose ARGS` in this project; raises with its stderr when `check` and it fails."""
        result = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=self.environment(),
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """`docker-compose ARGS` running, its stdout (and stderr) readable line by line."""
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.environment(),
            cwd=ROOT,
        )

    def containers(self, service: str) -> list[str]:
        """The ids of the service's containers, running or not."""
        ids = self.run("ps", "-a", "-q", service).stdout.split()
        return sorted(ids)


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).stdout.strip()


def lines_of(process: subprocess.Popen[str]) -> Iterator[str]:
    assert process.stdout is not None
    for line in process.stdout:
        yield line.rstrip("\n")
