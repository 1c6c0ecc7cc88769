"""How a test run picks its RabbitMQ (tests/brokers.py), as the line printed at its start shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import brokers


def test_amqp_url_wins_over_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """With AMQP_URL set, the run uses that broker and starts no container."""
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@broker.example:5672/")
    chosen = brokers.choose()
    assert (chosen.kind, chosen.url, chosen.container) == (
        "AMQP_URL",
        "amqp://u:p@broker.example:5672/",
        None,
    )


def test_without_docker_the_local_broker_is_used_and_the_reason_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no Docker engine answering, the run uses the local rabbitmq-server and its first line
    says Docker did not answer."""
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.delenv(brokers.CHOICE_ENV, raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    chosen = brokers.choose()
    assert (chosen.kind, chosen.url) == ("local rabbitmq-server", brokers.LOCAL_AMQP_URL)
    assert "broker: local rabbitmq-server at amqp://guest:***@127.0.0.1:5672/" in chosen.describe()
    assert "no Docker engine answers" in chosen.describe()


def test_a_broker_of_the_wrong_major_version_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With AVATAR_TEST_RABBITMQ_MAJOR=99 the chosen broker is refused, naming its version, so a
    RabbitMQ 4 pass cannot quietly run on 3."""
    monkeypatch.setenv(brokers.MAJOR_ENV, "99")
    chosen = brokers.Broker("AMQP_URL", brokers.LOCAL_AMQP_URL)
    brokers.inspect(chosen)
    assert chosen.error is not None
    assert chosen.error.startswith("AVATAR_TEST_RABBITMQ_MAJOR=99 but the broker is RabbitMQ ")
