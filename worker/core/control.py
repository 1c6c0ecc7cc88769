"""`session.stop` commands: every worker binds its own exclusive queue to the control exchange and
ends the named session if it runs here; the others ignore it.
"""

from __future__ import annotations

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from worker.broker import Broker
from worker.contract import StopCommand, describe_validation_error
from worker.core.manager import SessionManager

log = structlog.get_logger(__name__)

STOP_ROUTING_KEY = "session.stop"


class ControlListener:
    """Listens for stop commands on this worker's own exclusive control queue."""

    def __init__(self, broker: Broker, sessions: SessionManager, worker_id: str) -> None:
        self._broker = broker
        self._sessions = sessions
        self._worker_id = worker_id

    async def start(self) -> None:
        channel = await self._broker.channel()
        exchange = await channel.declare_exchange(
            self._broker.topo.control_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            self._broker.topo.control_queue(self._worker_id), exclusive=True, auto_delete=True
        )
        await queue.bind(exchange, STOP_ROUTING_KEY)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            command = StopCommand.model_validate_json(message.body)
        except ValidationError as exc:
            log.warning("control.invalid_stop", reason=describe_validation_error(exc))
            return
        if self._sessions.stop(command.session_id, "stopped"):
            log.info("control.stop", session_id=command.session_id, reason=command.reason)
