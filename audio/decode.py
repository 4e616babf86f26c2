"""Opening untrusted audio with FFmpeg safely and decoding it to bounded mono PCM.

Every limit is enforced before the work it guards: the size before any byte is parsed, the
container before FFmpeg sees the file (see sniff.py), the header's duration before decoding,
and the decoded duration while decoding, frame by frame, so a small file that expands to hours
is stopped after `max_duration_s` of samples and never held in memory.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.audio.stream import AudioStream
from av.container import InputContainer

from audio.errors import (
    AudioTooLarge,
    AudioTooLong,
    CorruptAudio,
    EmptyAudio,
    TranscodeTimeout,
    UnsupportedAudio,
)
from audio.sniff import ALLOWED_DEMUXERS, Sniffed, check_wav_header, sniff

Samples = npt.NDArray[np.float32]

# Canonical FFmpeg codec names accepted inside the allowed containers: what phones, browsers
# and office recorders produce. Anything else (ADPCM, WMA, video-only files...) is refused.
ALLOWED_CODECS: Final = frozenset(
    {
        "aac",
        "alac",
        "amr_nb",
        "amr_wb",
        "flac",
        "mp3",
        "opus",
        "vorbis",
        "pcm_alaw",
        "pcm_mulaw",
        "pcm_u8",
        "pcm_s16le",
        "pcm_s16be",
        "pcm_s24le",
        "pcm_s24be",
        "pcm_s32le",
        "pcm_f32le",
        "pcm_f64le",
    }
)
# Containers whose header duration is exact, so decoding much less than it means truncation.
_EXACT_DURATION: Final = frozenset({"flac", "matroska", "mov", "wav"})
# Slack on the duration limit, for headers that round up.
_DURATION_SLACK_S: Final = 0.25
# Tolerated isolated decode errors (a dropped packet on a phone) before the file is corrupt.
_MAX_DECODE_ERRORS: Final = 8
# FFmpeg's own Opus decoder mis-decodes some low-bitrate SILK frames (tonal sweeps such as
# the disaster chime come out up to 24 dB too loud); the reference libopus does not.
_LIBOPUS: Final = "libopus" in av.codecs_available


@dataclass(frozen=True)
class ProbeInfo:
    """What an audio file claims about itself, read from its headers."""

    container: str
    format_name: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None
    bit_rate: int | None
    size_bytes: int
    loudness_lufs: float | None = None


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_duration_s: float
    timeout_s: float | None = None


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    # Called by FFmpeg when a demuxer asks its context to open a second resource (an HLS
    # playlist entry, an MP4 data reference): never allowed.
    raise PermissionError(f"nested open refused: {url!r}")


# The MOV demuxer can follow data references to other files; keep that off explicitly.
_DEMUXER_OPTIONS: Final[dict[str, dict[str, str]]] = {
    "mov": {"enable_drefs": "0", "use_absolute_path": "0"},
}


@contextmanager
def open_audio(
    source: Path | str | bytes, limits: Limits
) -> Iterator[tuple[InputContainer, AudioStream, ProbeInfo]]:
    """Open `source` (a path, or the bytes themselves) with the one demuxer its bytes name."""
    if isinstance(source, str):
        source = Path(source)
    with ExitStack() as stack:
        handle: BinaryIO
        if isinstance(source, bytes):
            handle = io.BytesIO(source)
            size = len(source)
        else:
            try:
                handle = stack.enter_context(source.open("rb"))
            except IsADirectoryError:
                raise UnsupportedAudio(
                    "파일이 아니라 폴더입니다. / That is a folder, not a file."
                ) from None
            size = os.fstat(handle.fileno()).st_size
        if size > limits.max_bytes:
            raise AudioTooLarge(
                f"파일 크기 {size}바이트가 제한 {limits.max_bytes}바이트를 넘습니다. / "
                f"The file has {size} bytes, over the limit of {limits.max_bytes}."
            )
        sniffed = sniff(handle, size)
        if sniffed.demuxer not in ALLOWED_DEMUXERS:  # pragma: no cover - sniff only names these
            raise UnsupportedAudio(sniffed.demuxer)
        if sniffed.demuxer == "wav":
            check_wav_header(handle, size)
        handle.seek(0)
        container = _open_container(handle, sniffed)
        stack.callback(container.close)
        stream = _audio_stream(container)
        info = _probe_info(container, stream, sniffed, size)
        if (
            info.duration_s is not None
            and info.duration_s > limits.max_duration_s + _DURATION_SLACK_S
        ):
            raise AudioTooLong(
                f"오디오 길이 {info.duration_s:.0f}초가 "
                f"제한 {limits.max_duration_s:.0f}초를 넘습니다. / "
                f"The audio lasts {info.duration_s:.0f} s, over the limit of "
                f"{limits.max_duration_s:.0f} s."
            )
        yield container, stream, info


def _open_container(handle: BinaryIO, sniffed: Sniffed) -> InputContainer:
    try:
        return av.open(
            handle,
            "r",
            format=sniffed.demuxer,
            # The Python file object is the only input, so no URL protocol at all is allowed.
            # Demuxers that open inner inputs themselves (concat) copy this list to them,
            # where io_open is not consulted: "none" matches no protocol, not even file.
            options={"protocol_whitelist": "none"},
            container_options=_DEMUXER_OPTIONS.get(sniffed.demuxer, {}),
            io_open=_refuse_nested_open,
        )
    except (av.error.FFmpegError, OSError) as exc:
        # OSError: our refusal of a nested open, surfacing through FFmpeg's callback.
        raise CorruptAudio(
            f"{sniffed.container} 파일을 열 수 없습니다 ({_reason(exc)}). / "
            f"The {sniffed.container} file cannot be opened ({_reason(exc)})."
        ) from None


def _audio_stream(container: InputContainer) -> AudioStream:
    streams = list(container.streams.audio)
    if not streams:
        raise UnsupportedAudio("파일에 오디오 트랙이 없습니다. / The file has no audio stream.")
    for stream in streams:
        if stream.codec_context.codec.canonical_name in ALLOWED_CODECS:
            if stream.codec_context.sample_rate <= 0 or stream.codec_context.channels <= 0:
                raise CorruptAudio(
                    "오디오 트랙의 형식 정보가 잘못되었습니다. / "
                    "The audio stream's format information is invalid."
                )
            return stream
    names = ", ".join(sorted({s.codec_context.codec.canonical_name for s in streams}))
    raise UnsupportedAudio(
        f"지원하지 않는 오디오 코덱입니다: {names}. / Unsupported audio codec: {names}."
    )


def _probe_info(
    container: InputContainer, stream: AudioStream, sniffed: Sniffed, size: int
) -> ProbeInfo:
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
        duration = container.duration / av.time_base
    ctx = stream.codec_context
    bit_rate = ctx.bit_rate or container.bit_rate or None
    return ProbeInfo(
        container=sniffed.container,
        format_name=container.format.name,
        codec=ctx.codec.canonical_name,
        sample_rate=ctx.sample_rate,
        channels=ctx.channels,
        duration_s=duration,
        bit_rate=bit_rate,
        size_bytes=size,
    )


def _decoder(stream: AudioStream) -> AudioCodecContext:
    ctx = stream.codec_context
    if ctx.codec.canonical_name != "opus" or not _LIBOPUS:
        return ctx
    decoder = av.CodecContext.create("libopus", "r")
    decoder.extradata = ctx.extradata
    decoder.sample_rate = ctx.sample_rate
    decoder.layout = ctx.layout
    return decoder


def decode_mono(
    container: InputContainer,
    stream: AudioStream,
    info: ProbeInfo,
    limits: Limits,
    sample_rate: int,
) -> Samples:
    """Decode the stream to mono float32 at `sample_rate`, counting the seconds as they come."""
    started = time.monotonic()
    decoder = _decoder(stream)
    resampler: av.AudioResampler | None = None
    shape: tuple[str, str, int] | None = None
    chunks: list[Samples] = []
    decoded_s = 0.0
    errors = 0
    limit_s = limits.max_duration_s + _DURATION_SLACK_S

    def drain(frames: list[av.AudioFrame]) -> None:
        for out in frames:
            chunks.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))

    try:
        for packet in container.demux(stream):
            if limits.timeout_s is not None and time.monotonic() - started > limits.timeout_s:
                raise TranscodeTimeout(
                    f"{limits.timeout_s:.0f}초 안에 디코딩하지 못했습니다. / "
                    f"Decoding did not finish within {limits.timeout_s:.0f} s."
                )
            try:
                frames = decoder.decode(packet)
            except av.error.InvalidDataError:
                errors += 1
                if errors > _MAX_DECODE_ERRORS:
                    raise
                continue
            for frame in frames:
                if frame.sample_rate <= 0:
                    raise ValueError("a frame without a sample rate")
                decoded_s += frame.samples / frame.sample_rate
                if decoded_s > limit_s:
                    raise AudioTooLong(
                        f"디코딩한 길이가 제한 {limits.max_duration_s:.0f}초를 넘어 "
                        "중단했습니다. / "
                        f"Stopped decoding: the audio runs past the limit of "
                        f"{limits.max_duration_s:.0f} s."
                    )
                key = (frame.format.name, frame.layout.name, frame.sample_rate)
                if resampler is None or key != shape:
                    # A stream may change rate or layout midway; start a fresh resampler.
                    if resampler is not None:
                        drain(resampler.resample(None))
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                    shape = key
                frame.pts = None
                drain(resampler.resample(frame))
        if resampler is not None:
            drain(resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise CorruptAudio(
            f"오디오를 디코딩하는 중 오류가 났습니다 ({_reason(exc)}). / "
            f"The audio could not be decoded ({_reason(exc)})."
        ) from None
    except ValueError as exc:
        raise CorruptAudio(
            f"오디오 형식이 올바르지 않습니다 ({exc}). / The audio data is malformed ({exc})."
        ) from None

    if decoded_s == 0 or not chunks:
        if errors:
            raise CorruptAudio(
                "오디오를 하나도 디코딩하지 못했습니다. / Not one audio frame could be decoded."
            )
        raise EmptyAudio("파일에 오디오 샘플이 없습니다. / The file holds no audio samples.")
    if (
        info.duration_s is not None
        and container.format.name.split(",")[0] in _EXACT_DURATION
        and decoded_s < info.duration_s - max(0.5, 0.05 * info.duration_s)
    ):
        raise CorruptAudio(
            f"헤더는 {info.duration_s:.1f}초라고 하지만 {decoded_s:.1f}초만 들어 있습니다"
            " (잘린 파일). / "
            f"The header says {info.duration_s:.1f} s but only {decoded_s:.1f} s could be "
            "decoded (truncated)."
        )
    return np.concatenate(chunks)


def decode_file(
    source: Path | str | bytes, limits: Limits, sample_rate: int
) -> tuple[ProbeInfo, Samples]:
    """Open, check and decode in one go."""
    with open_audio(source, limits) as (container, stream, info):
        return info, decode_mono(container, stream, info, limits, sample_rate)


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or type(exc).__name__)
