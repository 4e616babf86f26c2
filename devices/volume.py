"""An indoor receiver's volume on its output: the gain it applies to PCM, and the level of what
it then writes (the ``level_dbfs`` its ``played`` ack reports)."""

from __future__ import annotations

import math

import numpy as np

from devices.sound import SILENCE_DBFS
from wire.contract import FULL_VOLUME


def gain(volume: int) -> float:
    """The amplitude factor of a volume of 0-100 (100: the samples as they are)."""
    return max(0, min(volume, FULL_VOLUME)) / FULL_VOLUME


def scaled_level(level_dbfs: float, volume: int) -> float:
    """The RMS level of PCM at `level_dbfs` once scaled for `volume`."""
    factor = gain(volume)
    if factor <= 0.0 or level_dbfs <= SILENCE_DBFS:
        return SILENCE_DBFS
    return round(max(SILENCE_DBFS, level_dbfs + 20.0 * math.log10(factor)), 2)


def scale_pcm(samples: bytes, volume: int) -> bytes:
    """Signed 16-bit PCM scaled for `volume`; unchanged at full volume."""
    if volume >= FULL_VOLUME:
        return samples
    pcm = np.frombuffer(samples[: len(samples) // 2 * 2], dtype="<i2")
    scaled = np.rint(pcm.astype(np.float64) * gain(volume)).astype("<i2")
    return scaled.tobytes()
