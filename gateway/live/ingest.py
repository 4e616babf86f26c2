"""What a talking client sends, turned into 20 ms Opus packets: raw Opus, WebM, AAC and PCM.

Pure functions and small state machines on bytes, no I/O. Opus packets that are already 20 ms
(of at most 160 kbit/s) pass through untouched; other Opus (Chrome's MediaRecorder writes 60 ms
packets) is decoded and encoded again in 20 ms packets, as are AAC (ADTS frames, as phone
encoders and Safari's recorder stream it) and PCM. Encoding blocks: callers run `Ingest.feed`
in a thread when `Ingest.blocking` says so.

Exceptions::

    NotAudio            a message that is not audio in the announced format (the client is
                        told, and disconnected after too many)
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, Final, Literal, Protocol

import av
import numpy as np

InputFormat = Literal["opus", "webm", "aac", "pcm"]
FORMATS: Final[tuple[InputFormat, ...]] = ("opus", "webm", "aac", "pcm")
PCM_RATES: Final = (8000, 16000, 24000, 48000)
FRAME_MS: Final = 20
# Per binary WebSocket message: an Opus packet, a MediaRecorder chunk, ADTS frames, or up to
# 250 ms of PCM.
MAX_MESSAGE_BYTES: Final = {
    "opus": 3 * 1275,
    "webm": 256 * 1024,
    "aac": 64 * 1024,
    "pcm": 48000 * 2 // 4,
}
# A 20 ms packet larger than this (160 kbit/s) is not passed through but encoded again at the
# gateway's bitrate: every packet is sent to every speaker, and kept in the recording.
MAX_PASSTHROUGH_BYTES: Final = 400
# What the HTTP server reads of one WebSocket message at most (its default is 16 MiB): the
# largest message above, with room for a text control message; a larger one closes the socket.
MAX_WS_MESSAGE_BYTES: Final = 512 * 1024
# An ADTS frame: a 7-byte header (9 with CRC) and at most 13 bits of length in all.
_ADTS_HEADER: Final = 7
_ADTS_MAX: Final = (1 << 13) - 1
_MAX_ELEMENT: Final = 1 << 20
_UNKNOWN: Final = -1

# Frame lengths in 1/10 ms by TOC configuration (RFC 6716, section 3.1).
_SILK = (100, 200, 400, 600)
_HYBRID = (100, 200)
_CELT = (25, 50, 100, 200)


class NotAudio(ValueError):
    """A message that is not audio in the announced format."""


def opus_duration_tenths(packet: bytes) -> int:
    """The length of an Opus packet in tenths of a millisecond, or NotAudio (RFC 6716 3.1)."""
    if not packet or len(packet) > 3 * 1275:
        raise NotAudio("an Opus packet has 1 to 3825 bytes")
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        size = _SILK[config % 4]
    elif config < 16:
        size = _HYBRID[config % 2]
    else:
        size = _CELT[config % 4]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
        if code == 1 and (len(packet) - 1) % 2:
            raise NotAudio("an Opus packet of two equal frames has an even length")
    else:
        if len(packet) < 2:
            raise NotAudio("an Opus packet with a frame count is too short")
        count = packet[1] & 0x3F
        if count == 0:
            raise NotAudio("an Opus packet has at least one frame")
    total = size * count
    if total > 1200:
        raise NotAudio("an Opus packet is at most 120 ms")
    return total


class Ingest(Protocol):
    @property
    def blocking(self) -> bool:
        """Whether `feed` encodes (run it in a thread then)."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """The 20 ms Opus packets that `data` completes (raises NotAudio)."""
        ...


class _Encoder:
    """16-bit mono PCM at one rate in, 20 ms Opus packets out."""

    def __init__(self, rate: int, bitrate: int) -> None:
        context: Any = av.CodecContext.create("libopus", "w")
        context.sample_rate = rate
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = bitrate
        context.time_base = Fraction(1, rate)
        context.options = {"application": "voip", "frame_duration": str(FRAME_MS)}
        context.open()
        self._context = context
        self._rate = rate
        self._size = rate * FRAME_MS // 1000
        self._pending = np.zeros(0, dtype="<i2")
        self._pts = 0

    def feed(self, samples: np.ndarray[Any, np.dtype[np.int16]]) -> list[bytes]:
        pending = np.concatenate([self._pending, samples])
        packets: list[bytes] = []
        offset = 0
        while pending.size - offset >= self._size:
            chunk = pending[offset : offset + self._size].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._pts
            frame.time_base = Fraction(1, self._rate)
            self._pts += self._size
            packets += [bytes(p) for p in self._context.encode(frame)]
            offset += self._size
        self._pending = pending[offset:].copy()
        return packets


class PcmIngest:
    """Signed 16-bit little-endian mono PCM at `rate`, in messages of any length."""

    blocking = True

    def __init__(self, rate: int, bitrate: int) -> None:
        if rate not in PCM_RATES:
            raise ValueError(f"PCM rate must be one of {PCM_RATES}")
        self._encoder = _Encoder(rate, bitrate)
        self._odd = b""

    def feed(self, data: bytes) -> list[bytes]:
        data = self._odd + data
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        return self._encoder.feed(np.frombuffer(data[:cut], dtype="<i2"))


class _Reframer:
    """Opus packets of any length in, 20 ms packets out (decoded and encoded again)."""

    def __init__(self, bitrate: int) -> None:
        decoder: Any = av.CodecContext.create("libopus", "r")
        decoder.sample_rate = 48000
        decoder.layout = "mono"
        self._decoder = decoder
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        self._encoder = _Encoder(48000, bitrate)

    def feed(self, packet: bytes) -> list[bytes]:
        out: list[bytes] = []
        try:
            frames = self._decoder.decode(av.Packet(packet))
        except av.error.FFmpegError as exc:
            raise NotAudio("the Opus packet does not decode") from exc
        for frame in frames:
            for resampled in self._resampler.resample(frame):
                samples = resampled.to_ndarray().reshape(-1).astype("<i2")
                out += self._encoder.feed(samples)
        return out


class OpusIngest:
    """One Opus packet per message (a client with its own encoder)."""

    def __init__(self, bitrate: int) -> None:
        self._bitrate = bitrate
        self._reframer: _Reframer | None = None
        self.blocking = False

    def feed(self, data: bytes) -> list[bytes]:
        return self.take(data)

    def take(self, packet: bytes) -> list[bytes]:
        fits = (
            opus_duration_tenths(packet) == FRAME_MS * 10 and len(packet) <= MAX_PASSTHROUGH_BYTES
        )
        if fits and self._reframer is None:
            return [packet]  # already what speakers play: passed through as it is
        if self._reframer is None:
            self._reframer = _Reframer(self._bitrate)
            self.blocking = True
        return self._reframer.feed(packet)


class WebmIngest:
    """A WebM (Matroska) stream with one Opus track, as browsers' MediaRecorder writes it, in
    chunks cut anywhere. A streaming EBML reader: the masters that hold the blocks are entered,
    everything else is skipped."""

    _MASTERS: Final = frozenset(
        {0x18538067, 0x1F43B675, 0xA0, 0x1654AE6B, 0xAE}  # Segment Cluster BlockGroup Tracks
    )
    _BLOCKS: Final = frozenset({0xA3, 0xA1})  # SimpleBlock, Block
    _CODEC_ID: Final = 0x86

    def __init__(self, bitrate: int) -> None:
        self._opus = OpusIngest(bitrate)
        self._buffer = bytearray()
        self._skip = 0
        self._codec: str | None = None
        self._seen_header = False

    @property
    def blocking(self) -> bool:
        return self._opus.blocking

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets: list[bytes] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buffer))
                del self._buffer[:dropped]
                self._skip -= dropped
                if self._skip:
                    return packets
            head = _element_head(self._buffer)
            if head is None:
                return packets
            element, size, length = head
            if not self._seen_header:
                if element != 0x1A45DFA3:
                    raise NotAudio("a WebM stream starts with an EBML header")
                self._seen_header = True
            if element in self._MASTERS:
                del self._buffer[:length]
                continue
            if size == _UNKNOWN or size > _MAX_ELEMENT:
                if element in self._BLOCKS or size == _UNKNOWN:
                    raise NotAudio("a WebM element is too large")
                del self._buffer[:length]
                self._skip = size
                continue
            if len(self._buffer) < length + size:
                return packets
            body = bytes(self._buffer[length : length + size])
            del self._buffer[: length + size]
            if element == self._CODEC_ID:
                self._codec = body.decode("ascii", "replace").rstrip("\x00")
                if self._codec != "A_OPUS":
                    raise NotAudio(f"the WebM track is {self._codec[:20]!r}, not Opus")
            elif element in self._BLOCKS:
                packets += self._block(body)

    def _block(self, body: bytes) -> list[bytes]:
        if self._codec is None:
            raise NotAudio("a WebM block came before its track")
        track = _vint(body, 0)
        if track is None:
            raise NotAudio("a WebM block without a track number")
        _, used = track
        if len(body) < used + 4:
            raise NotAudio("a WebM block is too short")
        flags = body[used + 2]
        if flags & 0x06:
            raise NotAudio("laced WebM blocks are not supported")
        return self._opus.take(body[used + 3 :])


def _vint(data: bytes | bytearray, at: int, *, keep_marker: bool = False) -> tuple[int, int] | None:
    """(value, length) of an EBML variable-length integer at `at`, or None if incomplete."""
    if at >= len(data):
        return None
    first = data[at]
    if first == 0:
        raise NotAudio("an EBML number longer than 8 bytes")
    length = 9 - first.bit_length()
    if at + length > len(data):
        return None
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for byte in data[at + 1 : at + length]:
        value = (value << 8) | byte
    if not keep_marker and value == (1 << (7 * length)) - 1:
        return _UNKNOWN, length
    return value, length


def _element_head(data: bytearray) -> tuple[int, int, int] | None:
    """(id, size, header length) of the element at the start of `data`, None if incomplete."""
    ident = _vint(data, 0, keep_marker=True)
    if ident is None:
        return None
    element, id_length = ident
    if id_length > 4:
        raise NotAudio("an EBML id longer than 4 bytes")
    size = _vint(data, id_length)
    if size is None:
        return None
    return element, size[0], id_length + size[1]


class AacIngest:
    """AAC in ADTS frames, in messages of any length: each whole frame is decoded, resampled to
    48 kHz mono and encoded again as 20 ms Opus. Bytes that do not continue the ADTS stream
    (a lost sync word, an impossible length) are not audio."""

    blocking = True
    RATE: Final = 48000

    def __init__(self, bitrate: int) -> None:
        self._decoder: Any = av.CodecContext.create("aac", "r")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.RATE)
        self._encoder = _Encoder(self.RATE, bitrate)
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        packets: list[bytes] = []
        while len(self._pending) >= _ADTS_HEADER:
            head = self._pending
            if head[0] != 0xFF or head[1] & 0xF6 != 0xF0:
                raise NotAudio("not an ADTS frame (no sync word)")
            length = ((head[3] & 0x03) << 11) | (head[4] << 3) | (head[5] >> 5)
            if not _ADTS_HEADER < length <= _ADTS_MAX:
                raise NotAudio("an ADTS frame of impossible length")
            if len(head) < length:
                break
            frame = bytes(head[:length])
            del self._pending[:length]
            packets += self._decode(frame)
        return packets

    def _decode(self, frame: bytes) -> list[bytes]:
        try:
            decoded = self._decoder.decode(av.Packet(frame))
        except av.error.FFmpegError as exc:
            raise NotAudio(f"an ADTS frame that does not decode: {exc}") from exc
        packets: list[bytes] = []
        for audio in decoded:
            for out in self._resampler.resample(audio):
                samples = np.asarray(out.to_ndarray(), dtype="<i2").reshape(-1)
                packets += self._encoder.feed(samples)
        return packets


def make_ingest(fmt: InputFormat, *, rate: int, bitrate: int) -> Ingest:
    makers: dict[str, Callable[[], Ingest]] = {
        "opus": lambda: OpusIngest(bitrate),
        "webm": lambda: WebmIngest(bitrate),
        "aac": lambda: AacIngest(bitrate),
        "pcm": lambda: PcmIngest(rate, bitrate),
    }
    return makers[fmt]()
