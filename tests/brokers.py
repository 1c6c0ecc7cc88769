"""Which RabbitMQ the test run uses, chosen once at its start and printed:

1. `AMQP_URL` when it is set;
2. otherwise a testcontainers RabbitMQ when a Docker engine answers. Its image is
   `AVATAR_TEST_RABBITMQ_IMAGE` (default: the official `rabbitmq:3-management`; CI builds one from
   Debian's package, see scripts/docker.sh). While it runs, `rabbitmqctl` on PATH reaches it;
3. otherwise the local `rabbitmq-server` at 127.0.0.1:5672 (scripts/test starts it).

`AVATAR_TEST_BROKER=local` skips the container. A broker that was asked for (an image named in
the environment) and does not start fails every broker test with the reason; the default image
failing to start (no registry) falls back to the local broker and says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiormq

LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_IMAGE = "rabbitmq:3-management"
IMAGE_ENV = "AVATAR_TEST_RABBITMQ_IMAGE"
MAJOR_ENV = "AVATAR_TEST_RABBITMQ_MAJOR"  # the RabbitMQ major version the run must get, e.g. 4
CHOICE_ENV = "AVATAR_TEST_BROKER"  # "local": never start a container
START_TIMEOUT_S = 90.0
AMQP_PORT = 5672


@dataclass
class Broker:
    """The chosen broker: how it was chosen, its URL, and why it cannot be used (if it cannot)."""

    kind: str  # "AMQP_URL" | "testcontainers" | "local rabbitmq-server"
    url: str
    detail: str = ""
    error: str | None = None
    container: Any = None  # testcontainers DockerContainer while one runs
    shim_dir: Path | None = None  # where the `rabbitmqctl` that reaches the container lives

    def describe(self) -> str:
        shown = self.url.replace(":guest@", ":***@")
        text = f"broker: {self.kind} at {shown}" + (f" ({self.detail})" if self.detail else "")
        return text + (f"\nbroker error: {self.error}" if self.error else "")

    def stop(self) -> None:
        """Remove the container, if one was started (Ryuk is off here, so nobody else does)."""
        if self.container is not None:
            container, self.container = self.container, None
            container.stop()
        if self.shim_dir is not None:
            shutil.rmtree(self.shim_dir, ignore_errors=True)
            self.shim_dir = None


def docker_answers() -> str | None:
    """None when a Docker engine answers a ping, else why not."""
    try:
        import docker
    except ImportError:
        return "the docker package is not installed (pip install -e '.[dev]')"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as exc:  # docker raises many types here (DockerException, requests', OS)
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


async def server_version(url: str, timeout_s: float = 5.0) -> str:
    """The `version` the broker announces when a client connects."""
    connection = await asyncio.wait_for(aiormq.connect(url), timeout_s)
    try:
        version = connection.server_properties.get("version", "?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()


def choose() -> Broker:
    """Pick the broker as the module docstring says; starts a container when that is the pick."""
    if os.environ.get("AMQP_URL"):
        return Broker("AMQP_URL", os.environ["AMQP_URL"])
    local = Broker("local rabbitmq-server", LOCAL_AMQP_URL)
    if os.environ.get(CHOICE_ENV) == "local":
        local.detail = f"{CHOICE_ENV}=local"
        return local
    no_docker = docker_answers()
    if no_docker is not None:
        local.detail = f"no Docker engine answers: {no_docker}"
        return local
    image = os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)
    broker = start_container(image)
    if broker.error is not None and IMAGE_ENV not in os.environ:
        local.detail = f"testcontainers could not start {image}: {broker.error}"
        return local
    return broker


def start_container(image: str) -> Broker:
    """A RabbitMQ container from `image` with its AMQP port on an ephemeral host port."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image is not local
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image).with_exposed_ports(AMQP_PORT)
    container.with_kwargs(labels={"org.avatar-worker.tests": "broker"})
    broker = Broker("testcontainers", "", detail=f"image {image}")
    try:
        container.start()
    except Exception as exc:  # docker/testcontainers errors (pull refused, no such image, ...)
        broker.error = f"{type(exc).__name__}: {exc}"[:300]
        return broker
    broker.container = container
    host = container.get_container_host_ip()
    broker.url = f"amqp://guest:guest@{host}:{container.get_exposed_port(AMQP_PORT)}/"
    version = wait_until_serving(broker.url, container)
    if version is None:
        logs = b"".join(container.get_logs()).decode(errors="replace")[-600:]
        broker.error = f"{image} did not accept AMQP within {START_TIMEOUT_S:.0f} s; logs: {logs}"
        broker.stop()
        return broker
    broker.detail = f"RabbitMQ {version}, image {image}; rabbitmqctl runs in the container"
    broker.shim_dir = put_rabbitmqctl_on_path(container.get_wrapped_container().id)
    return broker


def wait_until_serving(url: str, container: Any) -> str | None:
    """The broker's version once it accepts an AMQP connection; None if it never does."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return asyncio.run(server_version(url))
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError, ConnectionError):
            container.get_wrapped_container().reload()
            if container.get_wrapped_container().status == "exited":
                return None
            time.sleep(0.5)
    return None


def put_rabbitmqctl_on_path(container_id: str) -> Path:
    """`rabbitmqctl ARGS` (the reliability tests cut connections with it) runs in the container."""
    folder = Path(tempfile.mkdtemp(prefix="avatar-rabbitmqctl-"))
    script = folder / "rabbitmqctl"
    script.write_text(f'#!/bin/sh\nexec docker exec {container_id} rabbitmqctl "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return folder


def inspect(broker: Broker) -> None:
    """Name the broker's version in its description; with AVATAR_TEST_RABBITMQ_MAJOR set, a broker
    of another major version is an error (the RabbitMQ 4 pass must not run on 3)."""
    if broker.error is not None:
        return
    try:
        version = asyncio.run(server_version(broker.url))
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
        version = f"unreachable: {type(exc).__name__}"  # the broker_url fixture says what to do
    if broker.kind != "testcontainers":
        broker.detail = "; ".join(filter(None, [f"RabbitMQ {version}", broker.detail]))
    want = os.environ.get(MAJOR_ENV)
    if want and version.split(".")[0] != want:
        broker.error = f"{MAJOR_ENV}={want} but the broker is RabbitMQ {version}"
