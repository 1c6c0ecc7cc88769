"""Adoption: a live phoenix_rest session whose worker died goes on, followed by another worker.

A phoenix_rest conversation runs at Tavus whoever follows it, so a worker's death need not end
the user's call. The reaper that gets the session's lapsed record (and so its claim) hands it
here: the adopting worker writes the record as its own, follows the conversation, honours
`session.stop` and `max_duration_s`, and publishes the session's one outcome, with
`adopted_from` naming the worker that ran it before. A pipecat_daily session is not adoptable:
its bot died with its worker's process.
"""

from __future__ import annotations

import structlog

from tavus.errors import NotFoundError
from worker.contract import EndReason
from worker.core.manager import SessionManager
from worker.core.records import SessionRecord, SessionRecords
from worker.sessions.phoenix import PhoenixRunner

log = structlog.get_logger(__name__)


class Adopter:
    """Takes over live phoenix_rest sessions on this worker."""

    def __init__(
        self,
        *,
        phoenix: PhoenixRunner,
        records: SessionRecords,
        sessions: SessionManager,
        lease_s: float,
    ) -> None:
        self._phoenix = phoenix
        self._records = records
        self._sessions = sessions
        self._lease_s = lease_s
        self.adopted_total = 0

    async def adopt(self, record: SessionRecord) -> EndReason | None:
        """Follow the session from here on (None), or say why its conversation ended while no
        worker followed it: then the caller publishes that as its outcome. The caller holds the
        session's claim, which stays with this worker once adopted. Raises ProviderError or
        BrokerError when Tavus or the broker cannot be asked: nothing is adopted then."""
        assert record.is_adoptable and record.job is not None and record.conversation_id
        try:
            resumed = await self._phoenix.resume(record.conversation_id)
        except NotFoundError:
            return "provider_ended"
        if isinstance(resumed, str):
            log.info("adoption.conversation_over", session_id=record.session_id, reason=resumed)
            return resumed
        adopted = record.model_copy(
            update={
                "worker_id": self._sessions.worker_id,
                "adopted_from": record.worker_id,
                "unclaimed_since": None,
            }
        )
        # The record is this worker's before anything else: a worker dying right after leaves
        # a record another reaper adopts from again.
        await self._records.write(adopted, lease_s=self._lease_s, replace=True)
        self._sessions.adopt(adopted, self._phoenix, resumed)
        self.adopted_total += 1
        return None
