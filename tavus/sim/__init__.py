"""A local Tavus v2 + Daily v1 provider simulator (aiohttp, one port) for tests, compose and demos.

In-process::

    async with Simulator(tavus_api_keys={"k"}, daily_api_keys={"dk"}).running() as sim:
        sim.tavus_base_url, sim.daily_base_url            # http://127.0.0.1:PORT/v2 and /v1
        sim.faults.fail_next("POST /v2/conversations", n=2, status=503)
        sim.calls, sim.conversations                      # what the providers saw and hold

Out of process: ``await serve(host, port, tavus_api_keys=..., daily_api_keys=...)``, driven
over HTTP under ``/_sim/`` (see ``tavus.sim.admin``).
"""

from tavus.sim.clock import ManualClock, iso_ms, iso_us, system_clock
from tavus.sim.context import RecordedCall
from tavus.sim.faults import Faults
from tavus.sim.lifecycle import WebhookDelivery
from tavus.sim.seeds import (
    ANNA_REPLICA_ID,
    DEFAULT_REPLICA_ID,
    ERROR_REPLICA_ID,
    PIPECAT_PERSONA_ID,
    SALES_COACH_PERSONA_ID,
    TRAINING_REPLICA_ID,
)
from tavus.sim.server import DEFAULT_DAILY_KEYS, DEFAULT_TAVUS_KEYS, Simulator, serve
from tavus.sim.state import Conversation, Persona, Room
from tavus.sim.tokens import decode_hs256, encode_hs256

__all__ = [
    "ANNA_REPLICA_ID",
    "DEFAULT_DAILY_KEYS",
    "DEFAULT_REPLICA_ID",
    "DEFAULT_TAVUS_KEYS",
    "ERROR_REPLICA_ID",
    "PIPECAT_PERSONA_ID",
    "SALES_COACH_PERSONA_ID",
    "TRAINING_REPLICA_ID",
    "Conversation",
    "Faults",
    "ManualClock",
    "Persona",
    "RecordedCall",
    "Room",
    "Simulator",
    "WebhookDelivery",
    "decode_hs256",
    "encode_hs256",
    "iso_ms",
    "iso_us",
    "serve",
    "system_clock",
]
