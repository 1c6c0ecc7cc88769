"""The operator's Tavus commands of ``avatar-worker``: list and tidy personas, replicas and
conversations (e.g. end every active conversation after an incident). Builds no client itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from pydantic import BaseModel

from tavus.client import TavusClient
from tavus.errors import ProviderError
from tavus.models import ConversationStatus, CreatePersonaRequest

EXIT_OK = 0
EXIT_PROVIDER_ERROR = 2

Action = Callable[[argparse.Namespace, TavusClient, TextIO], Awaitable[int]]


def add_admin_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``personas``, ``replicas`` and ``conversations``; each sets ``args.admin_action``."""
    personas = _group(subparsers, "personas", "Tavus personas")
    _command(personas, "personas.list", "list", "list personas").add_argument(
        "--type", dest="persona_type", choices=["user", "system"], help="only this kind"
    )
    create = _command(personas, "personas.create", "create", "create a persona")
    create.add_argument("--name", required=True, help="persona_name")
    create.add_argument("--system-prompt", required=True)
    create.add_argument("--context")
    create.add_argument("--default-replica-id")
    create.add_argument("--pipeline-mode", choices=["full", "echo"])
    delete = _command(personas, "personas.delete", "delete", "delete personas")
    delete.add_argument("ids", nargs="+", metavar="ID")

    replicas = _group(subparsers, "replicas", "Tavus replicas")
    _command(replicas, "replicas.list", "list", "list replicas").add_argument(
        "--type", dest="replica_type", choices=["user", "system"], help="only this kind"
    )

    conversations = _group(subparsers, "conversations", "Tavus conversations")
    _command(conversations, "conversations.list", "list", "list conversations").add_argument(
        "--status", choices=["active", "ended"], help="only conversations in this state"
    )
    end = _command(conversations, "conversations.end", "end", "end conversations (free slots)")
    which = end.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID")
    which.add_argument("--all-active", action="store_true", help="end every active conversation")


def _group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = subparsers.add_parser(name, help=help_text)
    inner = parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
    return inner


def _command(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    action: str,
    name: str,
    help_text: str,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(admin_action=action)
    return parser


async def run_admin(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    """Run the command in ``args.admin_action``; 0 on success, 2 when Tavus said no."""
    action = _ACTIONS[args.admin_action]
    try:
        return await action(args, client, out)
    except ProviderError as error:
        print(f"error: {error.message}", file=out)
        return EXIT_PROVIDER_ERROR


async def _personas_list(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    rows = [p async for p in client.iter_personas(persona_type=args.persona_type)]
    columns = ["persona_id", "persona_name", "pipeline_mode", "default_replica_id", "created_at"]
    _emit(out, args.json, rows, columns)
    return EXIT_OK


async def _personas_create(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    request = CreatePersonaRequest(
        persona_name=args.name,
        system_prompt=args.system_prompt,
        context=args.context,
        default_replica_id=args.default_replica_id,
        pipeline_mode=args.pipeline_mode,
    )
    persona = await client.create_persona(request)
    _emit(out, args.json, [persona], ["persona_id", "persona_name", "created_at"])
    return EXIT_OK


async def _personas_delete(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    return await _each(args.ids, client.delete_persona, "deleted persona", args.json, out)


async def _replicas_list(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    rows = [r async for r in client.iter_replicas(replica_type=args.replica_type, verbose=True)]
    columns = ["replica_id", "replica_name", "status", "training_progress", "replica_type"]
    _emit(out, args.json, rows, columns)
    return EXIT_OK


async def _conversations_list(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    rows = [c async for c in client.iter_conversations(status=args.status)]
    columns = ["conversation_id", "status", "conversation_name", "replica_id", "created_at"]
    _emit(out, args.json, rows, columns)
    return EXIT_OK


async def _conversations_end(args: argparse.Namespace, client: TavusClient, out: TextIO) -> int:
    ids: list[str] = list(args.ids)
    if args.all_active:
        active = client.iter_conversations(status=ConversationStatus.ACTIVE)
        ids = [c.conversation_id async for c in active]
        if not ids and not args.json:
            print("no active conversations", file=out)
    return await _each(ids, client.end_conversation, "ended conversation", args.json, out)


async def _each(
    ids: Sequence[str],
    call: Callable[[str], Awaitable[None]],
    done: str,
    as_json: bool,
    out: TextIO,
) -> int:
    """Apply ``call`` to every id, reporting each; a failure does not stop the others."""
    results: list[dict[str, Any]] = []
    for ident in ids:
        try:
            await call(ident)
        except ProviderError as error:
            results.append({"id": ident, "ok": False, "error": error.message})
            if not as_json:
                print(f"error: {ident}: {error.message}", file=out)
            continue
        results.append({"id": ident, "ok": True})
        if not as_json:
            print(f"{done} {ident}", file=out)
    if as_json:
        print(json.dumps(results, indent=2), file=out)
    ok = all(r["ok"] for r in results)
    return EXIT_OK if ok else EXIT_PROVIDER_ERROR


def _emit(out: TextIO, as_json: bool, rows: Sequence[BaseModel], columns: list[str]) -> None:
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2), file=out)
    else:
        print(format_table(rows, columns), file=out)


def format_table(rows: Sequence[BaseModel], columns: list[str]) -> str:
    """Rows as left-aligned columns under an upper-case header; ``-`` for empty cells."""
    cells = [[_cell(getattr(row, col, None)) for col in columns] for row in rows]
    header = [col.upper() for col in columns]
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]
    lines = [
        "  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *cells]
    ]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    text = " ".join(str(value).split())
    return text if len(text) <= 48 else text[:47] + "…"


_ACTIONS: dict[str, Action] = {
    "personas.list": _personas_list,
    "personas.create": _personas_create,
    "personas.delete": _personas_delete,
    "replicas.list": _replicas_list,
    "conversations.list": _conversations_list,
    "conversations.end": _conversations_end,
}
