"""What a speaker does with broadcast audio it received: check it, measure it, decode it to PCM.

Used by the simulated speakers and the device agent. The bytes come over the network, so
they get the same treatment as uploads: only the allowed demuxers, bounded size and length.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from audio.decode import Limits, decode_file, decode_mono, open_audio
from audio.errors import CorruptAudio

# A broadcast is at most a 10-minute message plus its chimes; leave room, but not hours.
PLAYBACK_LIMITS: Final = Limits(max_bytes=32 * 1024 * 1024, max_duration_s=900.0, timeout_s=60.0)
_OPUS_GRANULE_RATE: Final = 48000


@dataclass(frozen=True)
class Pcm:
    """Signed 16-bit little-endian mono samples."""

    samples: bytes = field(repr=False)
    sample_rate: int
    duration_ms: int

    @property
    def frames(self) -> int:
        return len(self.samples) // 2


def decode_pcm(data: bytes, *, sample_rate: int = 16000, limits: Limits = PLAYBACK_LIMITS) -> Pcm:
    """Decode broadcast audio (Opus in Ogg, MP3, or any allowed upload format) to PCM."""
    _, samples = decode_file(data, limits, sample_rate)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    return Pcm(pcm.tobytes(), sample_rate, round(pcm.size * 1000 / sample_rate))


def duration_ms(data: bytes, *, limits: Limits = PLAYBACK_LIMITS) -> int:
    """Playing time of broadcast audio: from the Ogg Opus pages when it is one, else decoded."""
    exact = _ogg_opus_duration_ms(data)
    if exact is not None:
        return exact
    with open_audio(data, limits) as (container, stream, info):
        pcm = decode_mono(container, stream, info, limits, stream.codec_context.sample_rate)
        return round(pcm.size * 1000 / stream.codec_context.sample_rate)


def _ogg_opus_duration_ms(data: bytes) -> int | None:
    """(last granule position - pre-skip) / 48 kHz, per RFC 7845; None if not Ogg Opus."""
    if len(data) > PLAYBACK_LIMITS.max_bytes or not data.startswith(b"OggS"):
        return None
    head = data.find(b"OpusHead", 0, 512)
    if head < 0 or head + 12 > len(data):
        return None
    pre_skip: int = struct.unpack_from("<H", data, head + 10)[0]
    serial: int = struct.unpack_from("<I", data, 14)[0]
    last = data.rfind(b"OggS")
    # The last page must be a well-formed page that ends exactly where the data ends (an
    # "OggS" inside a packet would not); otherwise decoding decides.
    if last < 0 or last + 27 > len(data) or data[last + 4] != 0:
        return None
    segments = data[last + 26]
    table = data[last + 27 : last + 27 + segments]
    if len(table) != segments or last + 27 + segments + sum(table) != len(data):
        return None
    granule: int
    page_serial: int
    granule, page_serial = struct.unpack_from("<qI", data, last + 6)
    if page_serial != serial or granule < pre_skip:
        raise CorruptAudio(
            "Ogg 페이지의 재생 위치가 잘못되었습니다. / The Ogg page positions are invalid."
        )
    return round((granule - pre_skip) * 1000 / _OPUS_GRANULE_RATE)


def verify_sha256(data: bytes, expected: str) -> bool:
    """True when `data` hashes to `expected` (hex, any case); constant-time comparison."""
    actual = hashlib.sha256(data).hexdigest()
    return hmac.compare_digest(actual.encode(), expected.strip().lower().encode())
