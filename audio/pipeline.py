"""Turning an uploaded recording into broadcast-ready Opus and MP3: pure, blocking functions.

The path, end to end, all in this process (PyAV's bundled FFmpeg for codecs, numpy for the
rest):

    file --sniff/limits--> FFmpeg demuxer --decode--> mono float32 at 16 kHz
         --> loudness (BS.1770) --> trim leading/trailing silence
         --> gain to -16 LUFS + true-peak limiter (<= -1 dBTP)
         --> start chime + message + end chime --> Opus in Ogg, MP3

pydub is deliberately not used: after decoding, the message is one numpy array, and joining
chime, gap and message is a single ``np.concatenate``. pydub would add a round trip through
16-bit bytes (losing the float headroom the limiter relies on), import the deprecated
``audioop`` module, and its file helpers shell out to an ``ffmpeg`` binary we neither have
nor want near untrusted input. See README.md.

Run these in a worker process (audio.worker), never on the event loop.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import av
import numpy as np

from audio.chimes import CATEGORIES, chime
from audio.decode import Limits, ProbeInfo, Samples, decode_file, decode_mono, open_audio
from audio.errors import SilentAudio
from audio.loudness import block_powers, gated_loudness, k_weight, normalise, speech_bounds

__all__ = [
    "CODECS",
    "AudioOptions",
    "Encoded",
    "ProbeInfo",
    "Transcoded",
    "encode",
    "probe_file",
    "transcode_file",
]

OPUS_RATES: Final = frozenset({8000, 12000, 16000, 24000, 48000})
CODECS: Final = ("opus", "mp3")
# Pauses between the chimes and the voice, so the first word is not lost in the chime's ring.
_GAP_BEFORE_S: Final = 0.3
_GAP_AFTER_S: Final = 0.4


@dataclass(frozen=True)
class AudioOptions:
    """How uploads are limited and what the broadcast audio sounds like."""

    target_lufs: float = -16.0
    true_peak_dbtp: float = -1.0
    sample_rate: int = 16000
    opus_bitrate: int = 24_000
    mp3_bitrate: int = 32_000
    max_bytes: int = 20 * 1024 * 1024
    max_duration_s: float = 600.0
    trim_silence: bool = True
    add_chimes: bool = True
    chimes_dir: Path | None = None
    # Checked between packets inside the decoder; the worker's own timeout backs it up.
    decode_timeout_s: float | None = 60.0
    # A recording quieter than this (integrated, before any gain) is refused as silent.
    silence_floor_lufs: float = -55.0
    # libopus complexity 0-10; 10 is its default and best quality per bit.
    opus_complexity: int = 10

    def __post_init__(self) -> None:
        if self.sample_rate not in OPUS_RATES:
            raise ValueError(f"sample_rate must be one of {sorted(OPUS_RATES)}")
        if not -70.0 < self.target_lufs < 0.0 or self.true_peak_dbtp > 0.0:
            raise ValueError("target_lufs must be in (-70, 0) and true_peak_dbtp <= 0")
        if min(self.opus_bitrate, self.mp3_bitrate, self.max_bytes) <= 0:
            raise ValueError("bitrates and max_bytes must be positive")
        if self.max_duration_s <= 0:
            raise ValueError("max_duration_s must be positive")
        if not 0 <= self.opus_complexity <= 10:
            raise ValueError("opus_complexity must be within 0..10")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_bytes, self.max_duration_s, self.decode_timeout_s)


@dataclass(frozen=True)
class Encoded:
    codec: str
    container: str
    mime_type: str
    data: bytes = field(repr=False)
    sha256: str
    duration_ms: int
    sample_rate: int
    bitrate: int


@dataclass(frozen=True)
class Transcoded:
    variants: dict[str, Encoded]
    duration_ms: int
    speech_duration_ms: int
    source: ProbeInfo
    loudness_lufs: float
    input_loudness_lufs: float


def probe_file(
    path: Path, options: AudioOptions | None = None, *, measure: bool = False
) -> ProbeInfo:
    """Read what the file's headers say (after the same checks as a transcode).

    With `measure`, the file is also decoded, within the same limits, and its integrated
    loudness filled in.
    """
    options = options or AudioOptions()
    with open_audio(path, options.limits) as (container, stream, info):
        if not measure:
            return info
        pcm = decode_mono(container, stream, info, options.limits, options.sample_rate)
    rate = options.sample_rate
    loudness = gated_loudness(block_powers(k_weight(pcm, rate), rate))
    return replace(info, loudness_lufs=round(loudness, 2) if math.isfinite(loudness) else None)


def transcode_file(
    path: Path,
    *,
    category: str,
    options: AudioOptions,
    codecs: Collection[str] = CODECS,
    spoken_frame: tuple[Path, Path] | None = None,
) -> Transcoded:
    """Decode, clean up, frame with chimes and encode `path` for a `category` broadcast.

    `spoken_frame`: two recordings (our own, e.g. "this is a test" before and after) placed
    around the message, inside the chimes, at the message's loudness."""
    category = str(category)
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {sorted(CATEGORIES)}")
    wanted = _check_codecs(codecs)
    rate = options.sample_rate

    source, pcm = decode_file(path, options.limits, rate)
    weighted = k_weight(pcm, rate)
    input_lufs = gated_loudness(block_powers(weighted, rate))
    if not math.isfinite(input_lufs) or input_lufs < options.silence_floor_lufs:
        level = f"{input_lufs:.1f} LUFS" if math.isfinite(input_lufs) else "-inf"
        raise SilentAudio(
            f"녹음이 너무 조용하거나 무음입니다 ({level}). / "
            f"The recording is silent or nearly so ({level})."
        )
    if options.trim_silence:
        start, end = speech_bounds(weighted, rate, input_lufs)
        pcm, weighted = pcm[start:end], weighted[start:end]
    voice = normalise(
        pcm,
        rate,
        target_lufs=options.target_lufs,
        peak_dbtp=options.true_peak_dbtp,
        weighted=weighted,
    )
    parts: list[Samples] = [voice.samples]
    if spoken_frame is not None:
        before, after = (_announcement(p, options) for p in spoken_frame)
        parts = [
            before,
            _silence(_GAP_AFTER_S, rate),
            voice.samples,
            _silence(_GAP_AFTER_S, rate),
            after,
        ]
    if options.add_chimes:
        opening, closing = (
            chime(
                position,
                category,
                rate=rate,
                target_lufs=options.target_lufs,
                peak_dbtp=options.true_peak_dbtp,
                chimes_dir=options.chimes_dir,
            )
            for position in ("start", "end")
        )
        parts = [
            opening,
            _silence(_GAP_BEFORE_S, rate),
            *parts,
            _silence(_GAP_AFTER_S, rate),
            closing,
        ]
    message = np.concatenate(parts)
    variants = {codec: encode(message, codec, options) for codec in wanted}
    return Transcoded(
        variants=variants,
        duration_ms=_ms(message.size, rate),
        speech_duration_ms=_ms(voice.samples.size, rate),
        source=source,
        loudness_lufs=round(voice.loudness_lufs, 2),
        input_loudness_lufs=round(input_lufs, 2),
    )


def _announcement(path: Path, options: AudioOptions) -> Samples:
    """One of our own spoken announcements, decoded and brought to the broadcast's loudness."""
    rate = options.sample_rate
    _, pcm = decode_file(path, options.limits, rate)
    return normalise(
        pcm, rate, target_lufs=options.target_lufs, peak_dbtp=options.true_peak_dbtp
    ).samples


def _check_codecs(codecs: Collection[str]) -> list[str]:
    if isinstance(codecs, str):
        codecs = (codecs,)
    unknown = set(codecs) - set(CODECS)
    if unknown or not codecs:
        raise ValueError(f"codecs must be a non-empty subset of {CODECS}, got {sorted(codecs)}")
    return [codec for codec in CODECS if codec in codecs]


def _silence(seconds: float, rate: int) -> Samples:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def _ms(samples: int, rate: int) -> int:
    return round(samples * 1000 / rate)


def encode(samples: Samples, codec: str, options: AudioOptions) -> Encoded:
    """Encode mono float32 PCM at options.sample_rate as Opus in Ogg or as MP3.

    Output is bit-exact for the same input (no random Ogg serial, no version tags), so the
    same message always has the same sha256.
    """
    rate = options.sample_rate
    if codec == "opus":
        container, encoder, bitrate, mime = "ogg", "libopus", options.opus_bitrate, "audio/ogg"
        codec_options = {
            "application": "voip",
            "compression_level": str(options.opus_complexity),
            "flags": "+bitexact",
        }
        muxer_options = {"fflags": "+bitexact"}
    elif codec == "mp3":
        container, encoder, bitrate, mime = "mp3", "libmp3lame", options.mp3_bitrate, "audio/mpeg"
        codec_options = {"flags": "+bitexact"}
        # No ID3 tag: the file starts with an MPEG frame (its Xing/Info header), which every
        # speaker decoder accepts.
        muxer_options = {"fflags": "+bitexact", "id3v2_version": "0"}
    else:
        raise ValueError(f"unknown codec {codec!r}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, container_options=muxer_options) as out:
        stream: Any = out.add_stream(encoder, rate=rate, layout="mono", options=codec_options)
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.reshape(1, -1)), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = buffer.getvalue()
    return Encoded(
        codec=codec,
        container=container,
        mime_type=mime,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        duration_ms=_ms(samples.size, rate),
        sample_rate=rate,
        bitrate=bitrate,
    )
