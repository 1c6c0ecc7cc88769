"""The session-process side of bench/pipecat_capacity.py, loaded in each warm session process
with ``--factories bench.capacity_media:hook``.

Everything in Python runs as in production: the project's `build_pipeline`, Pipecat's real
`DailyTransport` (user room) and `TavusVideoService` (its own Daily client in the Tavus room,
creating and ending the conversation over HTTP at the bench's fake Tavus), Silero VAD and
smart-turn v3. Two edges are stand-ins:

* **daily-core**: `bench.fake_daily_core` (the media, and what the WebRTC side would do);
* **speech services** (Deepgram, the LLM, Cartesia): `BenchSTT` endpoints on energy and gives a
  final transcript 300 ms after the user stops; `BenchLLM` streams a two-sentence reply;
  `BenchTTS` returns 24 kHz audio (Cartesia's rate in this pipeline) at ~15 characters per
  second, in 40 ms chunks decoded from base64 JSON as Cartesia's websocket messages are.

``CAPACITY_STATS_DIR`` gets ``<pid>.json`` (the stand-ins' counters and event-loop lateness)
every second; ``CAPACITY_BEFORE_CUTS=1`` rebuilds the pipeline as it was before the cuts this
bench led to (turn tracking on, the replica-presence observer kept for the whole session).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import sys
import warnings
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from pipecat.frames.frames import Frame, TranscriptionFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601

from bench.fake_daily_core import (
    COUNTERS,
    TTS_RATE,
    USER_RATE,
    install_fake_daily_core,
    media,
    slices,
)
from pipelines.avatar import AvatarConnection
from pipelines.factory import DefaultServiceFactory, SessionSpec

_PIPELINE_FAKES = str(Path(__file__).resolve().parents[1] / "tests" / "pipelines")
if _PIPELINE_FAKES not in sys.path:
    sys.path.insert(0, _PIPELINE_FAKES)
from pipeline_fakes import FakeLLM  # noqa: E402  (tests/pipelines: the project's fakes)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.services.tts_service import TTSService

TTS_CHUNK_S = 0.04
TTS_CHARS_PER_S = 15.0
REPLY = (
    "That is a good question, and I am glad you asked it. "
    "Let us work through the first equation together, one step at a time."
)


# --- speech services ------------------------------------------------------------------------


class BenchSTT(STTService):
    """Deepgram-like: endpoints on energy, a final transcript 300 ms after speech stops."""

    def __init__(self) -> None:
        super().__init__(settings=STTSettings(model=None, language=None), ttfs_p99_latency=0.5)
        self._speech_s = 0.0
        self._quiet_s = 0.0

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32)
        loud = float(np.sqrt(np.mean(samples * samples))) > 500 if samples.size else False
        seconds = samples.size / USER_RATE
        if loud:
            self._speech_s += seconds
            self._quiet_s = 0.0
        elif self._speech_s > 0:
            self._quiet_s += seconds
            if self._quiet_s >= 0.3:
                self._speech_s = 0.0
                yield TranscriptionFrame(
                    text="Can you help me solve this equation?",
                    user_id="user-1",
                    timestamp=time_now_iso8601(),
                    finalized=True,
                )


class BenchLLM(FakeLLM):
    """Streams a fixed two-sentence reply, word by word."""

    def __init__(self) -> None:
        super().__init__(reply=REPLY)

    def reply_chunks(self) -> list[str]:
        COUNTERS.replies += 1
        return [word + " " for word in REPLY.split(" ")]


class BenchTTS(TTSService):
    """Cartesia-like: 24 kHz PCM in 40 ms chunks, each decoded from a base64 JSON message."""

    def __init__(self) -> None:
        super().__init__(
            settings=TTSSettings(model=None, voice=None, language=None),
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=TTS_RATE,
        )
        chunk = slices(media().replica_speech, int(TTS_RATE * TTS_CHUNK_S) * 2)
        self._messages = [
            json.dumps({"type": "chunk", "data": base64.b64encode(c).decode()}) for c in chunk
        ]

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        chunks = max(1, round(len(text) / TTS_CHARS_PER_S / TTS_CHUNK_S))
        for message in itertools.islice(itertools.cycle(self._messages), chunks):
            audio = base64.b64decode(json.loads(message)["data"])
            yield TTSAudioRawFrame(
                audio=audio, sample_rate=TTS_RATE, num_channels=1, context_id=context_id
            )


class BenchServices:
    """Bench speech services around the production avatar (Pipecat's TavusVideoService)."""

    def create_stt(self, spec: SessionSpec) -> FrameProcessor:
        return BenchSTT()

    def create_llm(self, spec: SessionSpec) -> FrameProcessor:
        return BenchLLM()

    def create_tts(self, spec: SessionSpec) -> FrameProcessor:
        return BenchTTS()

    def create_avatar(
        self, spec: SessionSpec, http: aiohttp.ClientSession, connection: AvatarConnection
    ) -> FrameProcessor:
        return DefaultServiceFactory().create_avatar(spec, http, connection)


_REPORTER: asyncio.Task[None] | None = None


async def _report(folder: Path) -> None:
    """Measure event-loop lateness and write the counters once a second."""
    path = folder / f"{os.getpid()}.json"
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(0.05)
        late_ms = (loop.time() - before - 0.05) * 1000
        COUNTERS.lag_max_ms = max(COUNTERS.lag_max_ms, late_ms)
        COUNTERS.lag_sum_ms += late_ms
        COUNTERS.lag_samples += 1
        if loop.time() - last_write >= 1.0:
            last_write = loop.time()
            path.write_text(json.dumps(COUNTERS.__dict__))


def undo_cuts() -> None:
    """Build pipelines as before the cuts: turn tracking on, the presence observer never leaves."""
    import pipelines.factory as factory

    production_worker = factory.PipelineWorker

    def worker_with_turn_tracking(*args: Any, **kwargs: Any) -> Any:
        kwargs["enable_turn_tracking"] = True
        return production_worker(*args, **kwargs)

    factory.PipelineWorker = worker_with_turn_tracking  # type: ignore[assignment,misc]
    factory.ReplicaPresenceObserver.detach_with = lambda self, detach: None  # type: ignore[method-assign]


def count_observer_calls() -> None:
    """Count what Pipecat's WorkerObserver queues for observers: each frame processed, once per
    observer, and each first push (the cut's saving, as a count rather than a CPU figure)."""
    from pipecat.pipeline.worker_observer import WorkerObserver

    send, push = WorkerObserver._send_to_proxy, WorkerObserver.on_push_frame

    async def counted_send(self: Any, data: Any) -> None:
        COUNTERS.observer_calls += len(self._proxies or ())
        await send(self, data)

    async def counted_push(self: Any, data: Any) -> None:
        if self._proxies and data.frame.id not in self._frames_pushed:
            COUNTERS.observer_calls += len(self._proxies)
        await push(self, data)

    WorkerObserver._send_to_proxy = counted_send  # type: ignore[method-assign]
    WorkerObserver.on_push_frame = counted_push  # type: ignore[method-assign]


def hook(spec: SessionSpec) -> tuple[BenchServices, None]:
    """The child's factories: bench speech services, the production DailyTransport."""
    global _REPORTER
    media()
    folder = os.environ.get("CAPACITY_STATS_DIR")
    if folder and _REPORTER is None:
        _REPORTER = asyncio.get_running_loop().create_task(_report(Path(folder)))
    return BenchServices(), None


install_fake_daily_core()
count_observer_calls()
if os.environ.get("CAPACITY_BEFORE_CUTS") == "1":
    undo_cuts()
