"""Producer-side tools behind `avatar-worker enqueue --wait` and `avatar-worker stop`: publish a job,
follow its events on a private reply queue, send a stop command.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from worker.broker import Topology, json_message
from worker.contract import SessionJob, StopCommand
from worker.producer import publish_session_job

TERMINAL = {"ended", "failed", "expired"}


async def follow_job(
    channel: AbstractChannel,
    job: SessionJob,
    *,
    topology: Topology | None = None,
    timeout_s: float = 60.0,
) -> AsyncIterator[dict[str, Any]]:
    """Publish `job` with a private `reply_to` queue and yield its events until a terminal one."""
    reply = await channel.declare_queue("", exclusive=True, auto_delete=True)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        events.put_nowait(json.loads(message.body))

    tag = await reply.consume(on_event, no_ack=True)
    try:
        await publish_session_job(channel, job, reply_to=reply.name, topology=topology)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no terminal event for {job.session_id} within {timeout_s:.0f} s"
                )
            event = await asyncio.wait_for(events.get(), remaining)
            yield event
            if event.get("status") in TERMINAL:
                return
    finally:
        await reply.cancel(tag)


async def send_stop(
    channel: AbstractChannel,
    session_id: str,
    reason: str | None = None,
    topology: Topology | None = None,
) -> None:
    """Publish a `session.stop` command (harmless if no worker runs that session)."""
    topo = topology or Topology()
    exchange = await channel.declare_exchange(
        topo.control_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await exchange.publish(
        json_message(StopCommand(session_id=session_id, reason=reason), persistent=False),
        routing_key="session.stop",
    )


def describe_event(event: dict[str, Any]) -> str:
    """One human line for an event, as `enqueue --wait` and `demo` print it."""
    status = event.get("status", "?")
    parts = [
        f"{status:<9}",
        f"session={event.get('session_id')}",
        f"attempt={event.get('attempt')}",
    ]
    if event.get("mode"):
        parts.append(f"mode={event['mode']}")
    for key in (
        "conversation_url",
        "room_url",
        "conversation_id",
        "fallback_reason",
        "reason",
        "duration_s",
        "delay_s",
        "not_after",
    ):
        if event.get(key) not in (None, ""):
            parts.append(f"{key}={event[key]}")
    if event.get("error"):
        err = event["error"]
        parts.append(f"error={err.get('code')}: {err.get('message')}")
    return "  ".join(parts)


def describe_transcript(transcript: dict[str, Any] | None) -> list[str]:
    """An outcome's transcript as lines for a person (`enqueue --wait --transcript`); none when
    the event carries no transcript."""
    if transcript is None:
        return []
    turns = transcript.get("turns") or []
    head = f"transcript ({transcript.get('source')}, {len(turns)} turns"
    if transcript.get("truncated"):
        head += f"; truncated, {transcript.get('dropped_turns', 0)} oldest dropped"
    lines = [head + "):"]
    for turn in turns:
        offset = turn.get("seconds_from_start")
        when = f"{offset:7.1f}s" if isinstance(offset, int | float) else " " * 8
        lines.append(f"  {when}  {turn.get('speaker', '?'):<9}  {turn.get('text', '')}")
    return lines
