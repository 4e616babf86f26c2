"""The attention chimes around every message: built-in tones, and a city's own files.

Built-in (synthesised deterministically, so the same message always encodes to the same bytes):

* ``disaster``: a two-tone alert nobody mistakes for a notice: three rising siren sweeps
  (650 -> 1350 Hz) then four hi-lo pairs (960 / 770 Hz); it ends with two hi-lo pairs and a
  falling low tone.
* every other category: the familiar four-note "ding-dong" of Korean public announcements,
  rising (C5 E5 G5 C6) before the message and falling after it.

A city replaces them by dropping files into ``AudioOptions.chimes_dir``, looked up in order:

    start.<category>.wav, start.wav      before the message
    end.<category>.wav,   end.wav        after the message

e.g. ``start.disaster.wav``. They are decoded with the same checks as uploads, trimmed to
30 s and normalised to the message loudness. A file that cannot be used is logged and the
built-in tone plays instead: a broken chime must never stop a warning.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from audio.decode import Limits, decode_file
from audio.errors import AudioError
from audio.loudness import normalise

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]

DISASTER: Final = "disaster"
CATEGORIES: Final = frozenset({"village_notice", "administrative", "crime_prevention", DISASTER})
CHIME_LIMITS: Final = Limits(max_bytes=8 * 1024 * 1024, max_duration_s=30.0, timeout_s=10.0)

_C5, _E5, _G5, _C6 = 523.25, 659.26, 783.99, 1046.50


def chime(
    position: str,
    category: str,
    *,
    rate: int,
    target_lufs: float,
    peak_dbtp: float,
    chimes_dir: Path | None = None,
) -> Samples:
    """The chime to play at `position` ("start" or "end") of a `category` message."""
    if position not in ("start", "end"):
        raise ValueError(f"unknown chime position {position!r}")
    if chimes_dir is not None:
        for name in (f"{position}.{category}.wav", f"{position}.wav"):
            path = chimes_dir / name
            if path.is_file():
                stat = path.stat()
                try:
                    return _city_chime(
                        str(path), stat.st_mtime_ns, stat.st_size, rate, target_lufs, peak_dbtp
                    )
                except AudioError as exc:
                    log.warning("chime %s unusable, built-in tone used: %s", path, exc.code)
                break
    style = "alert" if category == DISASTER else "bell"
    return _builtin_chime(style, position, rate, target_lufs, peak_dbtp)


@functools.lru_cache(maxsize=32)
def _city_chime(
    path: str, mtime_ns: int, size: int, rate: int, target_lufs: float, peak_dbtp: float
) -> Samples:
    # mtime and size are part of the key, so a replaced file is read again.
    _, samples = decode_file(Path(path), CHIME_LIMITS, rate)
    return _level(samples, rate, target_lufs, peak_dbtp)


@functools.lru_cache(maxsize=32)
def _builtin_chime(
    style: str, position: str, rate: int, target_lufs: float, peak_dbtp: float
) -> Samples:
    if style == "alert":
        tone = _alert_start(rate) if position == "start" else _alert_end(rate)
    else:
        notes = (_C5, _E5, _G5, _C6) if position == "start" else (_C6, _G5, _E5, _C5)
        tone = _bells(notes, rate)
    return _level(tone, rate, target_lufs, peak_dbtp)


def _level(samples: Samples, rate: int, target_lufs: float, peak_dbtp: float) -> Samples:
    leveled = normalise(samples, rate, target_lufs=target_lufs, peak_dbtp=peak_dbtp).samples
    leveled.setflags(write=False)  # cached and shared between messages
    return leveled


def _bells(notes: tuple[float, ...], rate: int, spacing_s: float = 0.36) -> Samples:
    ring_s = 1.3
    out = np.zeros(round((spacing_s * (len(notes) - 1) + ring_s) * rate))
    t = np.arange(round(ring_s * rate)) / rate
    attack = np.minimum(1.0, t / 0.004)
    for i, freq in enumerate(notes):
        # A few partials, the higher ones dying faster, as a struck bar does.
        note = np.zeros_like(t)
        for ratio, amp, decay in ((1.0, 1.0, 2.2), (2.0, 0.35, 3.5), (3.0, 0.12, 5.0)):
            if freq * ratio < 0.45 * rate:
                note += amp * np.exp(-decay * t) * np.sin(2 * np.pi * freq * ratio * t)
        start = round(i * spacing_s * rate)
        out[start : start + t.size] += note * attack
    return _fade(out, rate)


def _square_ish(
    phase: npt.NDArray[np.float64], top_freq: float, rate: int
) -> npt.NDArray[np.float64]:
    """Odd harmonics (a band-limited square) for a horn-like, carrying tone."""
    wave = np.zeros_like(phase)
    for harmonic in (1, 3, 5, 7):
        if top_freq * harmonic < 0.45 * rate:
            wave += np.sin(harmonic * phase) / harmonic
    return wave


def _tone_run(freqs: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float64]:
    phase = 2 * np.pi * np.cumsum(freqs) / rate
    return _square_ish(phase, float(freqs.max()), rate)


def _alert_start(rate: int) -> Samples:
    sweep_s, fall_s = 0.6, 0.2
    rise = np.linspace(650.0, 1350.0, round(sweep_s * rate))
    fall = np.linspace(1350.0, 650.0, round(fall_s * rate))
    sweeps = np.tile(np.concatenate((rise, fall)), 3)
    pair = np.concatenate((np.full(round(0.25 * rate), 960.0), np.full(round(0.25 * rate), 770.0)))
    return _fade(_tone_run(np.concatenate((sweeps, np.tile(pair, 4))), rate), rate)


def _alert_end(rate: int) -> Samples:
    pair = np.concatenate((np.full(round(0.25 * rate), 960.0), np.full(round(0.25 * rate), 770.0)))
    low = np.linspace(770.0, 520.0, round(0.7 * rate))
    wave = _tone_run(np.concatenate((np.tile(pair, 2), low)), rate)
    fade_out = np.ones_like(wave)
    fade_out[-low.size :] = np.linspace(1.0, 0.0, low.size)
    return _fade(wave * fade_out, rate)


def _fade(wave: npt.NDArray[np.float64], rate: int, edge_s: float = 0.01) -> Samples:
    """Short raised-cosine edges so a chime never starts or stops with a click."""
    edge = min(wave.size // 2, max(1, round(edge_s * rate)))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, edge))
    wave = wave.copy()
    wave[:edge] *= ramp
    wave[-edge:] *= ramp[::-1]
    return wave.astype(np.float32)
