"""Independent checks on encoded output: decode with PyAV directly, measure with pyloudnorm."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt
import pyloudnorm

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Heard:
    container: str
    codec: str
    sample_rate: int
    channels: int
    samples: Floats  # first channel, float64
    coded_rate: int  # the rate the stream declares it was encoded at (OpusHead input rate)


def hear(data: bytes) -> Heard:
    """Decode every frame of `data` (libopus for Opus, FFmpeg otherwise)."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        decoder = ctx
        if ctx.codec.canonical_name == "opus":
            decoder = av.CodecContext.create("libopus", "r")
            decoder.extradata = ctx.extradata
            decoder.sample_rate = ctx.sample_rate
            decoder.layout = ctx.layout
        chunks = []
        for packet in container.demux(stream):
            for frame in decoder.decode(packet):
                array = frame.to_ndarray().astype(np.float64)
                if frame.format.name.startswith("s16"):
                    array /= 32768.0
                if frame.format.is_planar:
                    chunks.append(array[0])
                else:
                    chunks.append(array.reshape(-1, ctx.channels)[:, 0])
        coded_rate = ctx.sample_rate
        extradata = ctx.extradata or b""
        if ctx.codec.canonical_name == "opus" and len(extradata) >= 16:
            coded_rate = int.from_bytes(extradata[12:16], "little")
        return Heard(
            container=container.format.name,
            codec=ctx.codec.canonical_name,
            sample_rate=ctx.sample_rate,
            channels=ctx.channels,
            samples=np.concatenate(chunks),
            coded_rate=coded_rate,
        )


def lufs(samples: Floats, rate: int) -> float:
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples))


def true_peak_db(samples: Floats, oversample: int = 4) -> float:
    """Peak of the band-limited signal, found by FFT resampling (not audio.loudness)."""
    n = samples.size
    spectrum = np.fft.rfft(samples)
    up = np.fft.irfft(spectrum, n=n * oversample) * oversample
    return float(20 * np.log10(np.abs(up).max()))
