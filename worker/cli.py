"""The `avatar-worker` command: run, demo, sim, enqueue, stop, schema, and the Tavus admin commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from worker.broker import BrokerUnavailable
from worker.contract import PipelineChoices, SessionJob, describe_validation_error, json_schemas
from worker.settings import StartupError, load_settings

PIPELINE_CHOICES = tuple(PipelineChoices.model_fields)  # enqueue --tts-voice, --llm-model, ...

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

    from worker.broker import Topology


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-worker", description="Start live AI avatar sessions from RabbitMQ jobs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run a worker until SIGTERM/SIGINT")

    demo = sub.add_parser(
        "demo", help="one session end to end (simulator unless TAVUS_API_KEY is set)"
    )
    demo.add_argument("--hold-s", type=float, default=2.0, help="how long the session stays up")

    sim = sub.add_parser("sim", help="run the local Tavus + Daily simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument(
        "--tavus-key",
        action="append",
        dest="tavus_keys",
        help="accepted x-api-key (repeatable; default sim-tavus-key)",
    )
    sim.add_argument(
        "--public-base-url",
        help="the simulator's address as others reach it (e.g. http://sim:8090 in compose)",
    )
    sim.add_argument(
        "--daily-key",
        action="append",
        dest="daily_keys",
        help="accepted Daily bearer key (repeatable; default sim-daily-key)",
    )

    enqueue = sub.add_parser("enqueue", help="publish a session.start job")
    enqueue.add_argument("--file", type=Path, help="a JSON job; flags override its fields")
    enqueue.add_argument("--session-id")
    enqueue.add_argument("--mode", choices=["auto", "pipecat_daily", "phoenix_rest"])
    enqueue.add_argument("--replica-id")
    enqueue.add_argument("--persona-id")
    enqueue.add_argument("--greeting", dest="custom_greeting")
    enqueue.add_argument("--context", dest="conversational_context")
    enqueue.add_argument("--language")
    enqueue.add_argument("--max-duration-s", type=int)
    enqueue.add_argument("--user-name")
    for choice in PIPELINE_CHOICES:
        enqueue.add_argument(
            f"--{choice.replace('_', '-')}",
            dest=f"pipeline_{choice}",
            help=f"pipecat_daily: the job's pipeline.{choice} (must be allowed by the worker)",
        )
    enqueue.add_argument(
        "--wait",
        action="store_true",
        help="print the session's events live (direct reply-to) until it ends",
    )
    enqueue.add_argument(
        "--until-ready",
        action="store_true",
        help="with --wait: exit at `ready` (or failed/expired); the session keeps running",
    )
    enqueue.add_argument(
        "--transcript",
        action="store_true",
        default=None,
        help="ask for the session's transcript in its outcome (with --wait: printed at the end)",
    )
    enqueue.add_argument("--timeout-s", type=float, default=600.0)

    stop = sub.add_parser("stop", help="end a session wherever it runs")
    stop.add_argument("session_id")
    stop.add_argument("--reason")

    schema = sub.add_parser("schema", help="print the contract's JSON Schemas")
    schema.add_argument("which", nargs="?", choices=["job", "event", "stop"], default=None)

    from worker.admin import add_admin_parsers
    from worker.ops.doctor import add_doctor_parser

    add_admin_parsers(sub)
    add_doctor_parser(sub)
    return parser


def _job_from_args(args: argparse.Namespace) -> SessionJob:
    data: dict[str, Any] = json.loads(args.file.read_text()) if args.file else {}
    for key in (
        "session_id",
        "mode",
        "replica_id",
        "persona_id",
        "custom_greeting",
        "conversational_context",
        "language",
        "max_duration_s",
        "user_name",
        "transcript",
    ):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    for choice in PIPELINE_CHOICES:
        value = getattr(args, f"pipeline_{choice}", None)
        if value is not None:
            data.setdefault("pipeline", {})[choice] = value
    data.setdefault("session_id", f"cli-{uuid.uuid4().hex[:10]}")
    return SessionJob.model_validate(data)


async def _enqueue(args: argparse.Namespace) -> int:
    from worker.amqp_connection import CONNECT_TIMEOUT_S, connect_any
    from worker.broker import Topology
    from worker.producer import publish_session_job

    settings = load_settings()
    job = _job_from_args(args)
    topo = Topology.from_settings(settings)
    async with await connect_any(settings.amqp_nodes(), timeout_s=CONNECT_TIMEOUT_S) as connection:
        if not args.wait:
            await publish_session_job(await connection.channel(), job, topology=topo)
            print(f"enqueued {job.session_id}")
            return 0
        return await _enqueue_and_wait(connection, job, topo, args)


async def _enqueue_and_wait(
    connection: AbstractConnection, job: SessionJob, topo: Topology, args: argparse.Namespace
) -> int:
    """`enqueue --wait`: the events on direct reply-to, up to `ready` or to the session's end."""
    from worker.client import NoReplyError, open_session
    from worker.client_tools import describe_event, describe_transcript

    print(f"enqueued {job.session_id}; waiting for its events", flush=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout_s
    try:
        async with open_session(connection, job, timeout_s=args.timeout_s, topology=topo) as call:
            for reply in call.seen:
                print(describe_event(reply.event), flush=True)
            last = call.seen[-1]
            if not args.until_ready:
                async for reply in call.follow(timeout_s=max(deadline - loop.time(), 0.0)):
                    print(describe_event(reply.event), flush=True)
                    last = reply
            for line in describe_transcript(last.event.get("transcript")):
                print(line, flush=True)
    except NoReplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"error: {exc} (it goes on; `avatar-worker stop` ends it)", file=sys.stderr)
        return 1
    return 0 if last.status in ("ended", "ready") else 1


async def _stop(args: argparse.Namespace) -> int:
    from worker.amqp_connection import CONNECT_TIMEOUT_S, connect_any
    from worker.broker import Topology
    from worker.client_tools import send_stop

    settings = load_settings()
    async with await connect_any(settings.amqp_nodes(), timeout_s=CONNECT_TIMEOUT_S) as connection:
        await send_stop(
            await connection.channel(),
            args.session_id,
            args.reason,
            Topology.from_settings(settings),
        )
    print(f"stop sent for {args.session_id}")
    return 0


async def _admin(args: argparse.Namespace) -> int:
    from worker.admin import run_admin
    from worker.app import build_tavus_client

    client = build_tavus_client(load_settings())
    async with client:
        return await run_admin(args, client, sys.stdout)


async def _sim(args: argparse.Namespace) -> int:
    """The simulator until SIGTERM or SIGINT, then 0 (as `run`). Without a handler a PID 1 in a
    container ignores SIGTERM, and SIGINT would end it with KeyboardInterrupt."""
    from tavus.sim import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt instead
            loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(
        serve(
            args.host,
            args.port,
            tavus_api_keys=set(args.tavus_keys or ["sim-tavus-key"]),
            daily_api_keys=set(args.daily_keys or ["sim-daily-key"]),
            public_base_url=args.public_base_url,
        )
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if serving.done():
        serving.result()  # it could not start (a taken port): raise that
    serving.cancel()
    await asyncio.wait({serving})  # its server closed; its CancelledError is ours to expect
    return 0


def _run(args: argparse.Namespace) -> int:
    from worker.logs import configure_logging

    settings = load_settings()
    # Commands that print for a person keep the worker's own lines to warnings unless asked.
    quiet = args.command in (
        "demo",
        "enqueue",
        "stop",
        "doctor",
        "personas",
        "replicas",
        "conversations",
    )
    level = "WARNING" if quiet and not os.environ.get("LOG_LEVEL") else settings.log_level
    configure_logging(level=level, fmt=settings.log_format, secrets=settings.secret_values())
    if args.command == "run":
        from pipelines.availability import PIPECAT_EXTRA_MISSING, is_pipecat_installed
        from worker.app import run_worker

        if not is_pipecat_installed():
            structlog.get_logger("worker.cli").warning(
                "worker.phoenix_rest_only", reason=PIPECAT_EXTRA_MISSING
            )

        asyncio.run(run_worker(settings))
        return 0
    if args.command == "demo":
        from worker.demo import run_demo

        return asyncio.run(run_demo(settings, hold_s=args.hold_s))
    if args.command == "sim":
        return asyncio.run(_sim(args))
    if args.command == "doctor":
        from worker.ops.doctor import run_doctor

        return asyncio.run(run_doctor(settings, sys.stdout, timeout_s=args.timeout_s))
    if args.command == "enqueue":
        return asyncio.run(_enqueue(args))
    if args.command == "stop":
        return asyncio.run(_stop(args))
    return asyncio.run(_admin(args))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        schemas = json_schemas()
        chosen = (
            {f"{args.which}.v1.json": schemas[f"{args.which}.v1.json"]} if args.which else schemas
        )
        print(json.dumps(chosen if len(chosen) > 1 else next(iter(chosen.values())), indent=2))
        return 0
    try:
        return _run(args)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    except ValidationError as exc:
        if exc.title == "Settings":  # a bad environment variable, not a bad job
            from worker.settings import describe_settings_error

            print(f"error: {describe_settings_error(exc)}", file=sys.stderr)
        else:
            print(f"error: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 69  # EX_UNAVAILABLE

    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
