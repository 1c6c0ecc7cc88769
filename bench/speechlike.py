"""Speech-like PCM without a recording: a voiced source through vowel formants, four syllables a
second. Silero VAD scores it as speech (confidence 0.8-1.0 within 100 ms of its start), so VAD
and smart-turn do the work they do on a real user. Generating 3 s takes about a second (plain
Python filters): bench/pipecat_capacity.py makes it once and the session processes load it.
"""

from __future__ import annotations

import numpy as np

_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480))
_BANDWIDTHS_HZ = (80, 100, 120)


def _resonate(x: np.ndarray, a1: float, a2: float, gain: float) -> np.ndarray:
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    for i, value in enumerate(x):
        v = gain * value - a1 * y1 - a2 * y2
        y[i] = v
        y2, y1 = y1, v
    return y


def speechlike(seconds: float, rate: int = 16000, seed: int = 1) -> np.ndarray:
    """``seconds`` of int16 speech-like audio at ``rate`` Hz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch_hz = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    pulses = (np.diff(np.floor(np.cumsum(pitch_hz / rate)), prepend=0) > 0).astype(float)
    source = _resonate(pulses, -0.95, 0.0, 1.0)
    out = np.zeros(n)
    segment = int(0.15 * rate)
    for start in range(0, n, segment):
        formants = _VOWELS[int(rng.integers(len(_VOWELS)))]
        x = source[start : start + segment]
        for fc, bw in zip(formants, _BANDWIDTHS_HZ, strict=True):
            r = np.exp(-np.pi * bw / rate)
            out[start : start + segment] += _resonate(
                x, -2 * r * np.cos(2 * np.pi * fc / rate), r * r, 1 - r
            )
    envelope = (0.5 * (1 + np.sin(2 * np.pi * 4 * t - np.pi / 2))) ** 0.7
    noise = rng.normal(0, 0.02, n) * (envelope > 0.3) * np.max(np.abs(out))
    out = out * envelope + noise
    return (out / np.max(np.abs(out)) * 0.5 * 32767).astype(np.int16)
