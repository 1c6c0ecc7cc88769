"""AMQP_URL as a list of nodes: what is accepted, what a bad list says (one line, password hidden),
how the list is shown, and what `avatar-worker run` does with a bad one."""

from __future__ import annotations

import os
import socket

import pytest
from pydantic import SecretStr, ValidationError

from tests.worker.harness import run_cli_once
from worker.amqp_connection import NoNodeAnswered, connect_any
from worker.amqp_nodes import AmqpNodes, AmqpUrlError, display_url
from worker.settings import Settings, describe_settings_error

PASSWORD = "s3cret-pass-0f9e"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_list_gives_each_node_in_order() -> None:
    """Three comma-separated URLs (spaces around the commas allowed) are three nodes, in order."""
    nodes = AmqpNodes.parse(
        f"amqp://u:{PASSWORD}@n1:5701/vh, amqp://u:{PASSWORD}@n2:5702/vh,amqps://u:{PASSWORD}@n3/vh"
    )
    assert [(n.host, n.port) for n in nodes] == [("n1", 5701), ("n2", 5702), ("n3", 5671)]
    assert nodes.display == "amqp://u:***@n1:5701/vh,amqp://u:***@n2:5702/vh,amqps://u:***@n3/vh"


def test_a_single_url_is_one_node() -> None:
    """The one-URL AMQP_URL of before still works, default port included."""
    nodes = AmqpNodes.parse("amqp://guest:guest@localhost/")
    assert [(n.host, n.port) for n in nodes] == [("localhost", 5672)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            f"amqp://u:{PASSWORD}@n1:5701/,,amqp://u:{PASSWORD}@n3:5703/",
            "AMQP_URL entry 2 of 3 is empty: remove the stray comma",
        ),
        (
            f"amqp://u:{PASSWORD}@n1:5701/,http://u:{PASSWORD}@n2/",
            "AMQP_URL entry 2 of 2 (http://u:***@n2/) has scheme 'http': use amqp:// or amqps://",
        ),
        (
            f"amqp://u:{PASSWORD}@n1:5701/,amqp://u:{PASSWORD}@n2:99999/",
            "AMQP_URL entry 2 of 2 (amqp://u:***@n2:99999/) has a port that is not a number"
            " from 1 to 65535",
        ),
        (
            f"amqp://u:{PASSWORD}@n1:5701/,amqp://u:{PASSWORD}@:5702/",
            "AMQP_URL entry 2 of 2 (amqp://u:***@:5702/) has no host",
        ),
        ("amqp://u:pa,ss@n1/", "AMQP_URL entry 1 of 2 (amqp://u:***) has a port that is not a"),
    ],
)
def test_a_bad_entry_is_named_with_its_password_hidden(value: str, message: str) -> None:
    """A malformed list is refused with one line naming the bad entry, its password as ***."""
    with pytest.raises(AmqpUrlError) as caught:
        AmqpNodes.parse(value)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert PASSWORD not in text
    assert "pa,ss" not in text and ",ss" not in text


def test_display_url_hides_every_password_even_in_a_bad_list() -> None:
    """Shown anywhere (logs, errors), every node's password is *** — also where a stray comma
    cut a password in two."""
    shown = display_url(f"amqp://u:{PASSWORD}@n1/,amqp://v:{PASSWORD}@n2/,amqp://u:pa,ss@n3/")
    assert shown == "amqp://u:***@n1/,amqp://v:***@n2/,amqp://u:***,***@n3/"


def test_settings_redact_every_nodes_password() -> None:
    """Each node's password is handed to the log redactor, percent-encoded or not."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        amqp_url=SecretStr("amqp://u:first-pass@n1/,amqp://u:second%40pass@n2/"),
    )
    assert {"first-pass", "second%40pass", "second@pass"} <= set(settings.secret_values())
    assert settings.amqp_url_for_display() == "amqp://u:***@n1/,amqp://u:***@n2/"


def test_a_bad_setting_is_described_by_its_variable_without_its_value() -> None:
    """A bad AMQP_URL fails Settings with a one-line description naming AMQP_URL, no password."""
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, amqp_url=SecretStr(f"amqp://u:{PASSWORD}@n1/,"))  # type: ignore[call-arg]
    described = describe_settings_error(caught.value)
    assert described == "invalid setting: AMQP_URL entry 2 of 2 is empty: remove the stray comma"
    assert PASSWORD not in str(caught.value)


async def test_no_node_answering_names_each_node_without_its_password() -> None:
    """When no node of the list answers, the error names every node and why, no password."""
    ports = [closed_port(), closed_port()]
    nodes = ",".join(f"amqp://u:{PASSWORD}@127.0.0.1:{p}/" for p in ports)
    with pytest.raises(NoNodeAnswered) as caught:
        await connect_any(nodes, timeout_s=4)
    text = str(caught.value)
    assert text.startswith("no node of 2 answered: ")
    for port in ports:
        assert f"127.0.0.1:{port} (AMQPConnectionError: [Errno 111] Connect call failed)" in text
    assert PASSWORD not in text


async def test_run_with_a_bad_list_exits_with_one_line() -> None:
    """`avatar-worker run` with a malformed AMQP_URL list exits non-zero with one line naming the
    bad entry: no traceback, no password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "WORKER_"))}
    env["AMQP_URL"] = f"amqp://u:{PASSWORD}@127.0.0.1:5701/,amqp://u:{PASSWORD}@127.0.0.1:57x2/"
    env["TAVUS_API_KEY"] = "test-tavus-key-0123456789"
    code, out, err = await run_cli_once(["run"], env)
    assert code == 2
    text = out + err
    assert text.splitlines() == [
        "error: invalid setting: AMQP_URL entry 2 of 2 (amqp://u:***@127.0.0.1:57x2/) has a port"
        " that is not a number from 1 to 65535 (a ',' or '@' in a user or password must be"
        " percent-encoded (%2C, %40))"
    ]
