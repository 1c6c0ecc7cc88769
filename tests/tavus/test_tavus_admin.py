"""The admin commands print readable tables or JSON, end conversations, and exit 2 on errors."""

from __future__ import annotations

import argparse
import io
import json

import bodies
import pytest
from conftest import API_KEY
from fake_tavus import FakeTavus

from tavus.client import TavusClient
from worker.admin import add_admin_parsers, run_admin


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="avatar-worker")
    add_admin_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def run(client: TavusClient, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_admin(parse(*argv), client, out)
    return code, out.getvalue()


async def test_replicas_list_is_an_aligned_table(fake: FakeTavus, client: TavusClient) -> None:
    """``replicas list`` prints every replica as aligned columns, all pages, verbose."""
    data = [
        bodies.REPLICA_LIST["data"][0],
        {
            "replica_id": "r1",
            "replica_name": "Training one",
            "status": "started",
            "training_progress": "40/100",
            "replica_type": "user",
        },
    ]
    fake.reply("GET", "/replicas", 200, {"data": data, "total_count": 2})
    code, out = await run(client, "replicas", "list")
    assert code == 0
    assert out == (
        "REPLICA_ID    REPLICA_NAME  STATUS     TRAINING_PROGRESS  REPLICA_TYPE\n"
        "r90bbd427f71  Anna          completed  100/100            system\n"
        "r1            Training one  started    40/100             user\n"
    )
    assert fake.seen[0].url.params["verbose"] == "true"


async def test_personas_list_json(fake: FakeTavus, client: TavusClient) -> None:
    """``--json`` prints the full records as a JSON array."""
    fake.reply("GET", "/personas", 200, bodies.PERSONA_LIST | {"total_count": 1})
    code, out = await run(client, "personas", "list", "--type", "user", "--json")
    assert code == 0
    records = json.loads(out)
    assert records[0]["persona_id"] == "p5317866a1b2"
    assert records[0]["created_at"] == "2025-01-01T00:00:00Z"
    assert fake.seen[0].url.params["persona_type"] == "user"


async def test_empty_list_says_none(fake: FakeTavus, client: TavusClient) -> None:
    """An empty listing shows the header and ``(none)``."""
    fake.reply("GET", "/conversations", 200, {"data": [], "total_count": 0})
    code, out = await run(client, "conversations", "list", "--status", "active")
    assert (code, out.splitlines()[-1]) == (0, "(none)")


async def test_personas_create_and_delete(fake: FakeTavus, client: TavusClient) -> None:
    """``personas create`` posts the definition; ``personas delete`` deletes each id."""
    fake.reply("POST", "/personas", 200, bodies.CREATED_PERSONA)
    fake.reply("DELETE", "/personas/p5317866a1b2", 204)
    code, out = await run(
        client,
        "personas",
        "create",
        "--name",
        "Interviewer",
        "--system-prompt",
        "Ask.",
        "--default-replica-id",
        "r90bbd427f71",
    )
    assert code == 0 and "p5317866a1b2  Interviewer" in out
    assert fake.body(0) == {
        "persona_name": "Interviewer",
        "system_prompt": "Ask.",
        "default_replica_id": "r90bbd427f71",
    }
    code, out = await run(client, "personas", "delete", "p5317866a1b2")
    assert (code, out) == (0, "deleted persona p5317866a1b2\n")


async def test_end_all_active_after_an_incident(fake: FakeTavus, client: TavusClient) -> None:
    """``conversations end --all-active`` ends every active conversation and reports each."""
    active = [
        {"conversation_id": "c1", "status": "active"},
        {"conversation_id": "c2", "status": "active"},
    ]
    fake.reply("GET", "/conversations", 200, {"data": active, "total_count": 2})
    fake.reply("POST", "/conversations/c1/end", 200)
    fake.reply("POST", "/conversations/c2/end", 200)
    code, out = await run(client, "conversations", "end", "--all-active")
    assert (code, out) == (0, "ended conversation c1\nended conversation c2\n")
    assert fake.seen[0].url.params["status"] == "active"


async def test_end_reports_each_failure_and_exits_2(fake: FakeTavus, client: TavusClient) -> None:
    """Ending ids keeps going after a failure, prints Tavus's reason, and exits 2."""
    fake.reply("POST", "/conversations/cgone/end", 400, bodies.INVALID_CONVERSATION)
    fake.reply("POST", "/conversations/c2/end", 200)
    code, out = await run(client, "conversations", "end", "cgone", "c2", "--json")
    assert code == 2
    assert json.loads(out) == [
        {
            "id": "cgone",
            "ok": False,
            "error": "Tavus conversation cgone does not exist on this"
            " account (400 Invalid conversation_id); list them with `avatar-worker conversations list`.",
        },
        {"id": "c2", "ok": True},
    ]


async def test_provider_error_prints_message_exit_2_never_the_key(
    fake: FakeTavus, client: TavusClient
) -> None:
    """A rejected key prints the readable message, exits 2, and the key is nowhere in the output."""
    fake.reply("GET", "/replicas", 401, bodies.INVALID_TOKEN)
    code, out = await run(client, "replicas", "list")
    assert code == 2
    assert out == (
        "error: TAVUS_API_KEY was rejected by Tavus (401 Invalid access token). Check the key in"
        " the Tavus developer portal.\n"
    )
    assert API_KEY not in out


def test_end_needs_ids_or_all_active() -> None:
    """``conversations end`` without ids or ``--all-active`` is a usage error, as are both."""
    with pytest.raises(SystemExit):
        parse("conversations", "end")
    with pytest.raises(SystemExit):
        parse("conversations", "end", "c1", "--all-active")
