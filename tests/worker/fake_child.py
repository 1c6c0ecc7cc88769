"""Hooks for ``python -m worker.pool.child --factories tests.worker.fake_child:<hook>``.

Each hook gets the session's spec and returns (ServiceFactory, transport factory): the scripted
fakes of tests/pipelines (no Daily, no Tavus, no network). Some also misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

_PIPELINE_FAKES = str(Path(__file__).resolve().parent.parent / "pipelines")
if _PIPELINE_FAKES not in sys.path:
    sys.path.insert(0, _PIPELINE_FAKES)

from pipeline_fakes import FakeServices, FakeTransport, make_spec  # noqa: E402

from pipelines.factory import ServiceFactory, SessionSpec, TransportFactory  # noqa: E402

__all__ = ["crashing", "factories", "hanging", "leaky", "make_spec"]

Factories = tuple[ServiceFactory, TransportFactory]

HANG_AFTER_S = 0.5


def factories(spec: SessionSpec) -> Factories:
    """Fake STT/LLM/TTS/avatar and a Daily-like transport that joins at once."""
    transport = FakeTransport()
    return FakeServices(), lambda _spec: transport


def hanging(spec: SessionSpec) -> Factories:
    """Like `factories`, but the event loop blocks (time.sleep) HANG_AFTER_S into the session."""
    asyncio.get_running_loop().call_later(HANG_AFTER_S, time.sleep, 3600)
    return factories(spec)


def leaky(spec: SessionSpec) -> Factories:
    """Like `factories`, but leaks the spec's secrets to stderr three ways, as a careless library might."""
    keys = [spec.tavus.api_key.get_secret_value()]
    keys += [
        cfg.api_key.get_secret_value()
        for cfg in (spec.providers.stt, spec.providers.llm)
        if cfg.api_key
    ]
    keys += [spec.bot_token.get_secret_value()] if spec.bot_token else []
    for key in keys:
        print(f"DEBUG raw print key={key}", file=sys.stderr, flush=True)
        print(f"stray stdout print key={key}", flush=True)  # stdout is stderr in the child
        logging.getLogger("careless.library").warning("using key %s", key)
    return factories(spec)


def crashing(spec: SessionSpec) -> Factories:
    """Dies at once with exit code 3, before the session could get ready."""
    sys.stderr.flush()
    os._exit(3)
