"""For Python services that enqueue jobs: publish a `session.start` job with publisher confirms."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika

from worker.broker import Topology, declare_job_topology, json_message
from worker.contract import SessionJob


async def publish_session_job(
    channel: aio_pika.abc.AbstractChannel,
    job: SessionJob | dict[str, Any],
    *,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    topology: Topology | None = None,
    declare: bool = True,
) -> str:
    """Validate and publish one job (persistent, confirmed); returns its message id.

    The channel must have publisher confirms on (aio-pika's default). Raises
    `pydantic.ValidationError` for a job that breaks the contract, before anything is sent.
    """
    topo = topology or Topology()
    model = job if isinstance(job, SessionJob) else SessionJob.model_validate(job)
    if declare:
        await declare_job_topology(channel, topo)
    exchange = await channel.get_exchange(topo.jobs_exchange, ensure=False)
    message_id = uuid.uuid4().hex
    body = model.to_body()
    await exchange.publish(
        json_message(
            body,
            reply_to=reply_to,
            correlation_id=correlation_id or message_id,
            message_id=message_id,
        ),
        routing_key=topo.jobs_routing_key,
        mandatory=False,  # the queue is bound above; a returned job would be logged whole
    )
    return message_id
