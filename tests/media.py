"""Test audio made on the spot with PyAV: phone-like recordings and hostile files, no downloads."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

Signal = npt.NDArray[np.float32]

# Speech-like synthesis: harmonic "voiced syllables" shaped by three formants, grouped into
# words with pauses, so that loudness gating, silence trimming and codecs see something close
# to a voice rather than a steady tone.
_FORMANTS = ((300.0, 800.0), (900.0, 2200.0), (2400.0, 2900.0))


def speech_like(
    seconds: float,
    rate: int,
    *,
    level_db: float = -25.0,
    lead_s: float | None = None,
    tail_s: float | None = None,
    seed: int = 7,
) -> Signal:
    """Mono float32 in [-1, 1]: silence, a run of syllables at `level_db` dBFS RMS, silence.

    The leading and trailing silence default to 0.8 s and 1.0 s, less for short clips; they
    hold a faint noise floor (-80 dBFS) as a phone microphone would.
    """
    rng = np.random.default_rng(seed)
    total = max(1, round(seconds * rate))
    lead = round((min(0.8, 0.2 * seconds) if lead_s is None else lead_s) * rate)
    tail = round((min(1.0, 0.25 * seconds) if tail_s is None else tail_s) * rate)
    body = max(0, total - lead - tail)
    voice = np.zeros(body, dtype=np.float64)
    pos = 0
    while pos < body:
        for _ in range(int(rng.integers(2, 5))):
            n = round(float(rng.uniform(0.12, 0.28)) * rate)
            if pos + n > body:
                break
            voice[pos : pos + n] = _syllable(n, rate, rng)
            pos += n
        pos += round(float(rng.uniform(0.15, 0.4)) * rate)
    active = np.abs(voice) > 0
    if active.any():
        rms = float(np.sqrt(np.mean(voice[active] ** 2)))
        voice *= 10 ** (level_db / 20) / rms
    out = np.zeros(total, dtype=np.float64)
    out[lead : lead + body] = voice
    out += rng.normal(0.0, 10 ** (-80 / 20), total)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _syllable(n: int, rate: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(n) / rate
    f0 = float(rng.uniform(110, 190)) * (1 + float(rng.uniform(-0.15, 0.15)) * t / t[-1])
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formants = [float(rng.uniform(lo, hi)) for lo, hi in _FORMANTS]
    top = min(rate * 0.45, 4000.0)
    wave = np.zeros(n)
    k = 1
    while k * f0.max() < top:
        freq = k * float(f0.mean())
        gain = sum(np.exp(-(((freq - f) / 180.0) ** 2)) for f in formants) + 0.05
        wave += gain / k * np.sin(k * phase)
        k += 1
    attack = max(1, n // 6)
    env = np.ones(n)
    env[:attack] = np.linspace(0, 1, attack)
    env[-attack:] = np.linspace(1, 0, attack)
    # Syllable-rate tremolo keeps the envelope from being a flat plateau.
    env *= 0.75 + 0.25 * np.sin(2 * np.pi * 5.0 * t)
    return np.asarray(wave * env)


@dataclass(frozen=True)
class _Kind:
    container: str
    codec: str
    rate: int
    channels: int = 1
    bit_rate: int | None = None
    video: bool = False
    options: Mapping[str, str] = field(default_factory=dict)


KINDS: Mapping[str, _Kind] = {
    "m4a": _Kind("ipod", "aac", 44100, channels=2, bit_rate=96_000),
    "mp4": _Kind("mp4", "aac", 48000, bit_rate=64_000, video=True),
    "3gp-amrnb": _Kind("3gp", "libopencore_amrnb", 8000, bit_rate=12_200),
    "webm-opus": _Kind("webm", "libopus", 48000, bit_rate=32_000),
    "ogg-opus": _Kind("ogg", "libopus", 48000, channels=2, bit_rate=48_000),
    "mp3": _Kind("mp3", "libmp3lame", 44100, bit_rate=64_000),
    "flac": _Kind("flac", "flac", 44100),
    "aac-adts": _Kind("adts", "aac", 32000, bit_rate=48_000),
    "amr-nb": _Kind("amr", "libopencore_amrnb", 8000, bit_rate=7_950),
    "wav-s16": _Kind("wav", "pcm_s16le", 44100, channels=2),
    "wav-s24": _Kind("wav", "pcm_s24le", 48000),
    "wav-f32": _Kind("wav", "pcm_f32le", 22050),
    "wav-mulaw": _Kind("wav", "pcm_mulaw", 8000),
    "wav-alaw": _Kind("wav", "pcm_alaw", 8000),
}
# Built separately: FFmpeg has no AMR-WB encoder, so its frames are assembled by hand.
RECORDING_KINDS: tuple[str, ...] = (*KINDS, "3gp-amrwb")


def make_recording(
    path: Path, kind: str, seconds: float = 3.0, *, level_db: float = -25.0, seed: int = 7
) -> Path:
    """Write a speech-like phone recording of `kind` (see RECORDING_KINDS) to `path`."""
    if kind == "3gp-amrwb":
        return make_amrwb_3gp(path, seconds, seed=seed)
    spec = KINDS[kind]
    voice = speech_like(seconds, spec.rate, level_db=level_db, seed=seed)
    channels = np.vstack([voice] * spec.channels) if spec.channels > 1 else voice[None, :]
    if spec.channels > 1:
        # A little inter-channel difference, as two microphones would give.
        channels[1] = np.roll(channels[1], 3) * 0.9
    encode_samples(path, spec.container, spec.codec, spec.rate, channels, spec.bit_rate, spec)
    return path


def encode_samples(
    path: Path | io.BytesIO,
    container: str,
    codec: str,
    rate: int,
    samples: npt.NDArray[np.float32],
    bit_rate: int | None = None,
    spec: _Kind | None = None,
    container_options: Mapping[str, str] | None = None,
) -> None:
    """Encode float32 samples shaped (channels, n) with any PyAV encoder and muxer."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(
        path, "w", format=container, container_options=dict(container_options or {})
    ) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        video: Any = None
        if spec is not None and spec.video:
            video = out.add_stream("mpeg4", rate=10)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        block = 4096
        n = samples.shape[1]
        for start in range(0, n, block):
            chunk = np.ascontiguousarray(samples[:, start : start + block])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if video is not None:
            for i in range(max(1, round(n / rate * 10))):
                picture = av.VideoFrame.from_ndarray(
                    np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8), format="rgb24"
                )
                picture.pts = i
                out.mux(video.encode(picture))
            out.mux(video.encode(None))


# AMR-WB storage format (RFC 4867 section 5): magic, then frames of one header byte and a
# payload whose size depends on the mode. Random payload bits decode to a noisy "voice".
_AMRWB_FRAME_BYTES = (17, 23, 32, 36, 40, 46, 50, 58, 60)


def make_amrwb_3gp(path: Path, seconds: float = 3.0, *, seed: int = 7) -> Path:
    """A 3GP with an AMR-WB stream assembled frame by frame (20 ms each), silence at both ends.

    Each 0.4 s "word" repeats one random frame: a steady buzz, where fresh random frames
    would decode to clicks far peakier than any voice.
    """
    rng = np.random.default_rng(seed)
    frames = round(seconds * 50)
    raw = bytearray(b"#!AMR-WB\n")
    mode = 2
    word = b""
    for i in range(frames):
        if i < 25 or i >= frames - 25 or (i // 20) % 4 == 3:
            raw += bytes([(15 << 3) | 0x04])  # NO_DATA: a pause
            continue
        if i % 20 == 0 or not word:
            word = rng.integers(0, 256, _AMRWB_FRAME_BYTES[mode], dtype=np.uint8).tobytes()
        raw += bytes([(mode << 3) | 0x04]) + word
    with (
        av.open(io.BytesIO(bytes(raw)), "r", format="amr") as src,
        av.open(str(path), "w", format="3gp") as out,
    ):
        source = src.streams.audio[0]
        target = out.add_stream_from_template(source)
        for packet in src.demux(source):
            if packet.dts is None:
                continue
            packet.stream = target
            out.mux(packet)
    return path


# ---- hostile inputs --------------------------------------------------------------------


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_truncated(path: Path, kind: str = "m4a", *, keep: float = 0.5) -> Path:
    """A recording cut short, as an interrupted upload leaves it."""
    make_recording(path, kind, 3.0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_random(path: Path, size: int = 64 * 1024, *, seed: int = 1) -> Path:
    data = bytearray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    data[0] = 0x42  # never an accidental MPEG sync byte
    path.write_bytes(bytes(data))
    return path


def make_text(path: Path) -> Path:
    path.write_text("안녕하세요, this is a note and not a recording.\n" * 20, encoding="utf-8")
    return path


def make_hls_playlist(path: Path) -> Path:
    path.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile:///etc/passwd\n"
        "#EXTINF:10.0,\nhttp://127.0.0.1:9/segment.ts\n#EXT-X-ENDLIST\n"
    )
    return path


def make_ffconcat(path: Path) -> Path:
    path.write_text("ffconcat version 1.0\nfile '/etc/passwd'\nfile 'secret.wav'\n")
    return path


def make_lying_wav(path: Path, seconds: float = 2.0, *, claim: float = 10.0) -> Path:
    """A WAV whose data chunk claims `claim` times the audio the file holds."""
    make_recording(path, "wav-s16", seconds)
    data = bytearray(path.read_bytes())
    offset = data.find(b"data")
    size = struct.unpack_from("<I", data, offset + 4)[0]
    struct.pack_into("<I", data, offset + 4, min(0xFFFF_FFF0, int(size * claim)))
    struct.pack_into("<I", data, 4, min(0xFFFF_FFF0, int(size * claim) + offset))
    path.write_bytes(bytes(data))
    return path


def make_oversized(path: Path, size: int) -> Path:
    """A well-formed WAV just over `size` bytes."""
    header = 44
    frames = (size - header) // 2 + 1024
    rate = 16000
    voice = speech_like(frames / rate, rate)
    pcm = (voice[:frames] * 32767).astype("<i2").tobytes()
    path.write_bytes(wav_header(len(pcm), rate, 1, 16) + pcm)
    return path


def wav_header(data_bytes: int, rate: int, channels: int, bits: int, fmt: int = 1) -> bytes:
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def make_long(path: Path, seconds: float = 660.0, *, hide_duration: bool = False) -> Path:
    """A small FLAC (a quiet tone compresses to almost nothing) that plays for `seconds`.

    With `hide_duration` the STREAMINFO sample count is zeroed ("unknown"), so only a
    decoder that counts samples as it goes can notice how long the file really is.
    """
    rate = 8000
    total = round(seconds * rate)
    # Digital silence with a rare click: FLAC stores it as constant subframes of a few bytes.
    with av.open(str(path), "w", format="flac") as out:
        stream: Any = out.add_stream("flac", rate=rate, layout="mono")
        block = rate * 10
        click = np.zeros((1, block), dtype=np.int16)
        click[0, 0] = 3000
        for start in range(0, total, block):
            n = min(block, total - start)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(click[:, :n]), "s16", "mono")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    if hide_duration:
        data = bytearray(path.read_bytes())
        # STREAMINFO starts at byte 8; its total-samples field is the low 36 bits of bytes 21..26.
        data[21] &= 0xF0
        data[22:26] = b"\x00\x00\x00\x00"
        data[26:42] = bytes(16)  # the MD5 of the audio: unknown as well
        path.write_bytes(bytes(data))
    return path


def make_video_only(path: Path) -> Path:
    """An MP4 holding one short video stream and no audio at all."""
    with av.open(str(path), "w", format="mp4") as out:
        video: Any = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def make_unsupported_codec(path: Path, *, variant: str = "adpcm-in-wav") -> Path:
    """Audio the allow-list refuses: a valid WAV holding ADPCM, or WMA in an ASF container."""
    if variant == "adpcm-in-wav":
        voice = speech_like(2.0, 16000)[None, :]
        encode_samples(path, "wav", "adpcm_ima_wav", 16000, voice)
    elif variant == "wma-in-asf":
        voice = speech_like(2.0, 22050)[None, :]
        encode_samples(path, "asf", "wmav2", 22050, voice, 64_000)
    else:
        raise ValueError(variant)
    return path


def make_silence(path: Path, seconds: float = 3.0, *, kind: str = "wav-s16") -> Path:
    """All digital silence in a well-formed file."""
    spec = KINDS[kind]
    samples = np.zeros((spec.channels, round(seconds * spec.rate)), dtype=np.float32)
    encode_samples(path, spec.container, spec.codec, spec.rate, samples, spec.bit_rate)
    return path


HOSTILE: Mapping[str, Callable[[Path], Path]] = {
    "empty": make_empty,
    "truncated": make_truncated,
    "random": make_random,
    "text": make_text,
    "hls": make_hls_playlist,
    "ffconcat": make_ffconcat,
    "lying_wav": make_lying_wav,
    "video_only": make_video_only,
    "unsupported_codec": make_unsupported_codec,
    "silence": make_silence,
}
