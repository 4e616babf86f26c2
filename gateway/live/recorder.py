"""A live session's recording: the 20 ms Opus packets it sent, kept as Ogg Opus like an upload."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

import av

# Samples per 20 ms packet at Opus's 48 kHz granule rate.
_GRANULE: Final = 960
_PRE_SKIP: Final = 312
_FRAME_MS: Final = 20
# A live talk of the longest allowed length is a few megabytes; refuse to hold more than this.
MAX_RECORDING_BYTES: Final = 64 * 1024 * 1024
# Bytes kept per 20 ms packet on average: 160 kbit/s, the most that is passed through
# (`ingest.MAX_PASSTHROUGH_BYTES`) and above any bitrate the gateway encodes at.
_BYTES_PER_PACKET: Final = 400


@dataclass(frozen=True)
class Recording:
    data: bytes = field(repr=False)
    sha256: str
    duration_ms: int
    mime_type: str = "audio/ogg"
    codec: str = "opus"


class Recorder:
    """Collects the packets as they are sent; `finish` muxes them (blocking: run in a thread).

    Bounded by the longest allowed talk: at most `max_ms` of packets, and as many bytes as
    that length at a generous bitrate (never more than `MAX_RECORDING_BYTES`). What comes
    beyond is sent to the speakers but not kept (`truncated`)."""

    def __init__(self, *, max_ms: int) -> None:
        self.max_packets = max(1, max_ms // _FRAME_MS)
        self.max_bytes = min(MAX_RECORDING_BYTES, self.max_packets * _BYTES_PER_PACKET)
        self._packets: list[bytes] = []
        self._bytes = 0
        self.truncated = False

    def add(self, packet: bytes) -> None:
        if len(self._packets) >= self.max_packets or self._bytes + len(packet) > self.max_bytes:
            self.truncated = True
            return
        self._packets.append(packet)
        self._bytes += len(packet)

    @property
    def size(self) -> int:
        return self._bytes

    @property
    def packets(self) -> int:
        return len(self._packets)

    def finish(self) -> Recording | None:
        if not self._packets:
            return None
        return ogg_opus(self._packets)


def ogg_opus(packets: list[bytes]) -> Recording:
    """Ogg Opus (RFC 7845) of mono 20 ms packets; bit-exact for the same packets."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, _PRE_SKIP, 48000, 0, 0)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg", container_options={"fflags": "+bitexact"}) as out:
        stream: Any = out.add_stream("libopus", rate=48000)
        stream.codec_context.extradata = head
        for index, data in enumerate(packets):
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = index * _GRANULE
            packet.time_base = Fraction(1, 48000)
            out.mux(packet)
    data = buffer.getvalue()
    duration_ms = max(0, (len(packets) * _GRANULE - _PRE_SKIP) * 1000 // 48000)
    return Recording(data=data, sha256=hashlib.sha256(data).hexdigest(), duration_ms=duration_ms)
