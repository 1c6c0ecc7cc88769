"""The image the Dockerfile builds (on a local Debian/Python base here): who it runs as, what it
keeps out, and the one-line errors a missing or wrong setting gives, as outside a container."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers.docker import ROOT, built_image, clean_environment, docker, inspect

BIN = Path(sys.executable).parent
NO_KEY = "TAVUS_API_KEY is not set: the worker cannot start Tavus sessions without it"
# A broker nobody answers for (port 1 refuses at once), with a password that must stay hidden.
UNREACHABLE_URL = "amqp://guest:hunter2-secret@127.0.0.1:1/"


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
