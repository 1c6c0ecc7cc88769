"""daily-core at its Python boundary, for bench/pipecat_capacity.py: what the session process's
DailyTransport (user room) and TavusVideoService (Tavus room) see from daily-python, without
WebRTC. Join completes, then the other participant joins; the user's microphone arrives as 20 ms
callbacks of 16 kHz PCM (speech-like 3 s, then 7 s of silence, repeated); the replica's camera
as 1280×720 RGB frames at 30 fps (a new 2.7 MB buffer per frame, as daily-python hands over) and
its microphone as 20 ms callbacks at 24 kHz, silent except while it "says" the TTS audio the bot
sent it as ``conversation.echo``; audio written to the user room completes in real time. Not done:
VP8/Opus decode and encode, RGB↔I420, the network — the part a bench without a room cannot price.

Environment (set by the orchestrator): ``CAPACITY_MEDIA_DIR`` holds ``user16k.npy`` and
``replica24k.npy``; ``CAPACITY_VIDEO=0`` turns the replica's video off (to price the relay);
``CAPACITY_VIDEO_SIZE=640x360`` sends it smaller than the user room's 1280×720 (Pipecat then
resizes every frame). `Counters` is what the stand-ins saw.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pipecat.transports.daily.transport as daily_transport_module

VIDEO_SIZE = (1280, 720)  # Tavus's replica video, and our DailyTransport's video_out size
VIDEO_FPS = 30  # TavusVideoService captures the replica at 30 fps
USER_RATE = 16000  # the pipeline's audio_in_sample_rate
TTS_RATE = 24000  # the pipeline's audio_out_sample_rate: Cartesia's output and Tavus's
USER_SPEECH_S, USER_PAUSE_S = 3.0, 7.0
JOIN_DELAY_S = 0.05
PARTICIPANT_DELAY_S = 0.3


# --- media --------------------------------------------------------------------------------


def _load(name: str, fallback: Callable[[], np.ndarray]) -> bytes:
    folder = os.environ.get("CAPACITY_MEDIA_DIR")
    path = Path(folder) / name if folder else None
    samples = np.load(path) if path is not None and path.exists() else fallback()
    return bytes(samples.astype(np.int16).tobytes())


def _silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


class Media:
    """The PCM the fake participants send, loaded once per process."""

    def __init__(self) -> None:
        from bench.speechlike import speechlike  # the orchestrator caches its output

        self.user = _load(
            "user16k.npy",
            lambda: np.concatenate(
                [speechlike(USER_SPEECH_S, USER_RATE), _silence(USER_PAUSE_S, USER_RATE)]
            ),
        )
        self.replica_speech = _load("replica24k.npy", lambda: speechlike(3.0, TTS_RATE, seed=2))
        self.video_on = os.environ.get("CAPACITY_VIDEO", "1") != "0"
        width, _, height = os.environ.get("CAPACITY_VIDEO_SIZE", "1280x720").partition("x")
        self.video_size = (int(width), int(height))
        self.pixels = bytearray(
            np.full(self.video_size[0] * self.video_size[1] * 3, 96, dtype=np.uint8).tobytes()
        )


_MEDIA: Media | None = None


@dataclass
class Counters:
    """What the stand-ins saw, written to ``CAPACITY_STATS_DIR/<pid>.json`` every second."""

    video_in: int = 0  # replica frames handed to Pipecat
    video_out: int = 0  # frames Pipecat wrote to the user room's camera
    audio_out_s: float = 0.0  # audio Pipecat wrote to the user room's microphone
    echo_s: float = 0.0  # TTS audio the bot sent Tavus as conversation.echo
    replies: int = 0  # LLM replies (user turns that ended)
    lag_max_ms: float = 0.0  # event loop: worst lateness of a 50 ms timer
    lag_sum_ms: float = 0.0
    lag_samples: int = 0
    observer_calls: int = 0  # frame events Pipecat queued for observers (one per observer)


COUNTERS = Counters()


def media() -> Media:
    global _MEDIA
    if _MEDIA is None:
        _MEDIA = Media()
    return _MEDIA


# --- daily-core stand-in --------------------------------------------------------------------


@dataclass
class AudioData:
    """daily.AudioData as Pipecat reads it."""

    audio_frames: bytes
    sample_rate: int
    num_channels: int = 1
    bits_per_sample: int = 16

    @property
    def num_audio_frames(self) -> int:
        return len(self.audio_frames) // 2


@dataclass
class VideoFrame:
    """daily.VideoFrame as Pipecat reads it."""

    buffer: bytes
    width: int
    height: int
    color_format: str
    timestamp_us: int = 0


class _Ticker(threading.Thread):
    """Calls ``tick`` every ``interval_s`` on its own thread (as daily-core's renderers do)."""

    def __init__(self, interval_s: float, tick: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(daemon=True, name="fake-daily-core")
        self._interval_s = interval_s
        self._tick = tick
        self._stop_event = stop

    def run(self) -> None:
        deadline = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self._tick()
            except RuntimeError:  # the loop closed under us at the end of the session
                return
            deadline += self._interval_s
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                deadline = time.monotonic()


class FakeCallClient:
    """daily.CallClient at its Python boundary, for one room (the user's or Tavus's)."""

    def __init__(self, event_handler: Any) -> None:
        self._handler = event_handler
        self._stop = threading.Event()
        self._room_url = ""
        self._speaking_until = 0.0
        self._lock = threading.Lock()

    @property
    def _is_tavus_room(self) -> bool:
        return "tavus" in self._room_url

    def join(self, url: str, token: str | None = None, completion: Any = None, **_: Any) -> None:
        self._room_url = url
        threading.Thread(target=self._joined, args=(completion,), daemon=True).start()

    def _joined(self, completion: Any) -> None:
        time.sleep(JOIN_DELAY_S)
        local = {"id": f"bot-{id(self):x}"}
        completion({"participants": {"local": local}, "meetingSession": {"id": "m"}}, None)
        time.sleep(PARTICIPANT_DELAY_S)
        other = "replica" if self._is_tavus_room else "user-1"
        self._handler.on_participant_joined({"id": other, "info": {"userName": other}})

    def leave(self, completion: Any = None) -> None:
        self._stop.set()
        if completion is not None:
            completion(None)

    def release(self) -> None:
        self._stop.set()

    def send_app_message(
        self, message: Any, participant_id: str | None = None, completion: Any = None
    ) -> None:
        """Tavus "says" echoed TTS audio: its microphone carries speech for that long."""
        properties = message.get("properties") if isinstance(message, dict) else None
        if isinstance(properties, dict) and message.get("event_type") == "conversation.echo":
            json.dumps(message)  # daily-python serialises the message for signalling
            seconds = len(base64.b64decode(properties["audio"])) / 2 / properties["sample_rate"]
            COUNTERS.echo_s += seconds
            with self._lock:
                self._speaking_until = max(self._speaking_until, time.monotonic()) + seconds
        if completion is not None:
            completion(None)

    def set_audio_renderer(
        self,
        participant_id: str,
        callback: Callable[..., None],
        audio_source: str = "microphone",
        sample_rate: int = 16000,
        callback_interval_ms: int = 20,
    ) -> None:
        chunk = int(sample_rate * callback_interval_ms / 1000) * 2
        if self._is_tavus_room:
            speech, silence = itertools.cycle(slices(media().replica_speech, chunk)), bytes(chunk)

            def tick() -> None:
                with self._lock:
                    speaking = time.monotonic() < self._speaking_until
                audio = next(speech) if speaking else silence
                callback(participant_id, AudioData(audio, sample_rate), audio_source)

        else:
            user = itertools.cycle(slices(media().user, chunk))

            def tick() -> None:
                callback(participant_id, AudioData(next(user), sample_rate), audio_source)

        _Ticker(callback_interval_ms / 1000, tick, self._stop).start()

    def set_video_renderer(
        self,
        participant_id: str,
        callback: Callable[..., None],
        video_source: str = "camera",
        color_format: str = "RGB",
    ) -> None:
        if not media().video_on:
            return
        pixels, (width, height) = media().pixels, media().video_size

        def tick() -> None:
            frame = VideoFrame(bytes(pixels), width, height, color_format)  # a new buffer each
            COUNTERS.video_in += 1
            callback(participant_id, frame, video_source)

        _Ticker(1 / VIDEO_FPS, tick, self._stop).start()

    def update_subscriptions(self, *_: Any, completion: Any = None, **__: Any) -> None:
        if completion is not None:
            completion(None)

    def __getattr__(self, name: str) -> Callable[..., None]:
        """Every other CallClient call succeeds at once."""

        def call(*_: Any, completion: Any = None, **__: Any) -> None:
            if completion is not None:
                completion(None)

        return call


def slices(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


class FakeAudioSource:
    """daily.CustomAudioSource: a write completes once its audio has played (real time)."""

    def __init__(self, sample_rate: int, channels: int = 1, auto_silence: bool = True) -> None:
        self._bytes_per_s = sample_rate * channels * 2
        self._writes: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        threading.Thread(target=self._play, daemon=True, name="fake-daily-audio").start()

    def write_frames(self, frames: bytes, completion: Any = None) -> None:
        self._writes.put((len(frames), completion))

    def _play(self) -> None:
        played_until = time.monotonic()
        while True:
            size, completion = self._writes.get()
            played_until = max(played_until, time.monotonic()) + size / self._bytes_per_s
            COUNTERS.audio_out_s += size / self._bytes_per_s
            time.sleep(max(played_until - time.monotonic(), 0))
            if completion is not None:
                try:
                    completion(size // 2)
                except RuntimeError:
                    return


class FakeVideoSource:
    """daily.CustomVideoSource: daily-core would convert and encode the frame here."""

    def __init__(self, width: int, height: int, color_format: str = "RGB") -> None:
        self.size = (width, height)
        self.frames_written = 0

    def write_frame(self, frame: bytes) -> None:
        self.frames_written += 1
        COUNTERS.video_out += 1


class FakeTrack:
    def __init__(self, source: object) -> None:
        self.id = f"track-{id(self):x}"


class FakeDaily:
    @staticmethod
    def init(*_: Any, **__: Any) -> None:
        pass


def install_fake_daily_core() -> None:
    """Point Pipecat's Daily transport (and so TavusVideoService's client) at the stand-ins."""
    module: Any = daily_transport_module
    module.CallClient = FakeCallClient
    module.CustomAudioSource = FakeAudioSource
    module.CustomVideoSource = FakeVideoSource
    module.CustomAudioTrack = FakeTrack
    module.CustomVideoTrack = FakeTrack
    module.Daily = FakeDaily
