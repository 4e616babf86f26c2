"""A command's audio on a speaker: fetched (bounded, hash-checked), decoded to PCM, measured.

Shared by the simulated fleet and the device agent. A command's URL is not covered by its
signature (only the audio's sha256 is), so the bytes are always checked against the hash, and the
speaker's token goes only to the gateway's own origin: a command pointing elsewhere is refused
when a gateway origin is configured, and fetched without the token when none is.

Exceptions::

    SoundError          the audio of a command cannot be made ready (`reason` for the ack)
    ├── FetchFailed     the URL could not be fetched, was refused, or sent too much
    ├── IntegrityFailed the bytes do not match the command's sha256 and size
    └── Undecodable     the bytes match but do not decode (audio.errors.AudioError)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
from dataclasses import dataclass, field
from typing import ClassVar, Final
from urllib.parse import urlsplit

import httpx
import numpy as np

from audio.errors import AudioError
from audio.playback import Pcm, decode_pcm
from wire import contract
from wire.contract import FailReason, RejectReason

MAX_AUDIO_BYTES: Final = 32 * 1024 * 1024
SILENCE_DBFS: Final = -200.0  # the floor an Ack's level_dbfs accepts


class SoundError(Exception):
    reason: ClassVar[FailReason | RejectReason] = FailReason.FETCH_FAILED


class FetchFailed(SoundError):
    reason = FailReason.FETCH_FAILED


class IntegrityFailed(SoundError):
    reason = RejectReason.INTEGRITY


class Undecodable(SoundError):
    reason = FailReason.UNDECODABLE


@dataclass(frozen=True)
class Sound:
    """Decoded audio with its measured level, ready for the horn."""

    pcm: Pcm = field(repr=False)
    level_dbfs: float

    @property
    def duration_ms(self) -> int:
        return self.pcm.duration_ms


def measure_level_dbfs(samples: bytes) -> float:
    """RMS level of signed 16-bit PCM in dBFS (a full-scale square wave is 0 dBFS)."""
    pcm = np.frombuffer(samples[: len(samples) // 2 * 2], dtype="<i2")
    if pcm.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) / 32768.0
    if rms <= 0.0:
        return SILENCE_DBFS
    return round(max(SILENCE_DBFS, 20.0 * math.log10(rms)), 2)


def decode_sound(data: bytes, *, sample_rate: int = 16000) -> Sound:
    """Decode and measure; blocking (tens of milliseconds per minute of audio): use a thread."""
    try:
        pcm = decode_pcm(data, sample_rate=sample_rate)
    except AudioError as exc:
        raise Undecodable(exc.detail) from exc
    return Sound(pcm, measure_level_dbfs(pcm.samples))


def matches(data: bytes, ref: contract.AudioRef) -> bool:
    """True when `data` is exactly the audio `ref` names (size and sha256)."""
    if len(data) != ref.size:
        return False
    return hmac.compare_digest(hashlib.sha256(data).hexdigest(), ref.sha256)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


@dataclass(frozen=True, kw_only=True)
class Fetcher:
    """Fetches a command's audio by URL over a shared httpx client.

    `gateway_url`: the only origin that receives `token` (and, when set, the only one fetched).
    """

    client: httpx.AsyncClient
    token: str | None = field(default=None, repr=False)
    gateway_url: str | None = None
    max_bytes: int = MAX_AUDIO_BYTES
    attempts: int = 3
    retry_delay_s: float = 1.0

    async def fetch(self, ref: contract.AudioRef) -> bytes:
        """The bytes behind `ref.url`, checked against its size and sha256."""
        url = ref.url
        if url is None:
            raise FetchFailed("the audio carries no URL")
        if urlsplit(url).scheme not in ("http", "https"):
            raise FetchFailed(f"refusing a non-HTTP audio URL: {url[:100]}")
        same_origin = self.gateway_url is not None and _origin(url) == _origin(self.gateway_url)
        if self.gateway_url is not None and not same_origin:
            raise FetchFailed(f"refusing audio from outside the gateway: {url[:100]}")
        if ref.size > self.max_bytes:
            raise FetchFailed(f"audio of {ref.size} bytes exceeds the {self.max_bytes} limit")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token and same_origin else {}
        delay = self.retry_delay_s
        for attempt in range(1, self.attempts + 1):
            try:
                data = await self._get(url, headers, ref.size)
            except (httpx.HTTPError, FetchFailed) as exc:
                if attempt == self.attempts:
                    raise FetchFailed(f"could not fetch {url[:100]}: {exc}") from exc
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if not matches(data, ref):
                raise IntegrityFailed(f"audio from {url[:100]} does not match its sha256")
            return data
        raise AssertionError("unreachable")

    async def _get(self, url: str, headers: dict[str, str], size: int) -> bytes:
        async with self.client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise FetchFailed(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > size:
                raise FetchFailed(f"the server announces {declared} bytes, expected {size}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > size:
                    raise FetchFailed(f"the server sent more than the expected {size} bytes")
            return bytes(body)
