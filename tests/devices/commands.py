"""Commands, signing keys and audio for the speaker tests, all made on the spot."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from wire import contract
from wire.contract import Category, Codec

NOW = 1_800_000_000_000


def tone(seconds: float = 0.5, *, rate: int = 16000, freq: float = 440.0, amp: float = 0.3) -> Any:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]


def encode(samples: Any, *, fmt: str, codec: str, rate: int) -> bytes:
    """Mono float32 samples shaped (1, n) through any PyAV encoder and muxer."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = 24_000 if codec == "libopus" else 32_000
        step = 960
        for start in range(0, samples.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + step]), format="flt", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def opus_clip(seconds: float = 0.5, *, freq: float = 440.0) -> bytes:
    # Opus takes 8, 12, 16, 24 or 48 kHz input; 16 kHz mono is what the gateway sends.
    return encode(tone(seconds, freq=freq), fmt="ogg", codec="libopus", rate=16000)


def mp3_clip(seconds: float = 0.5) -> bytes:
    return encode(tone(seconds, rate=22050), fmt="mp3", codec="libmp3lame", rate=22050)


def audio(data: bytes, codec: Codec = Codec.OPUS, duration_ms: int = 500) -> contract.AudioRef:
    mime = "audio/ogg" if codec is Codec.OPUS else "audio/mpeg"
    return contract.inline_audio(codec=codec, mime_type=mime, data=data, duration_ms=duration_ms)


def command(
    *,
    city: str = "testcity",
    scope: contract.Scope | None = None,
    at_ms: int = NOW,
    ttl_ms: int = 60_000,
    priority: int = 20,
    refs: tuple[contract.AudioRef, ...] | None = None,
    **fields: Any,
) -> contract.Command:
    body: dict[str, Any] = {
        "type": "play",
        "id": contract.new_id(),
        "broadcast_id": contract.new_id(),
        "city": city,
        "scope": scope or contract.Scope(kind="all"),
        "category": Category.ADMINISTRATIVE,
        "priority": priority,
        "issued_at_ms": at_ms,
        "expires_at_ms": at_ms + ttl_ms,
        "nonce": contract.new_nonce(),
        "audio": refs if refs is not None else (audio(b"OggS-not-really-audio"),),
    }
    body.update(fields)
    return contract.Command.model_validate(body)


def cancel_of(play: contract.Command, *, at_ms: int = NOW) -> contract.Command:
    return command(
        city=play.city,
        scope=play.scope,
        at_ms=at_ms,
        type="cancel",
        broadcast_id=play.broadcast_id,
        refs=(),
    )


def resend(cmd: contract.Command, *, at_ms: int) -> contract.Command:
    """The same command id published again later (a retry): new nonce and issue time."""
    return cmd.model_copy(update={"nonce": contract.new_nonce(), "issued_at_ms": at_ms})


@dataclass(frozen=True)
class Keys:
    key_id: str
    private: bytes
    public: bytes

    def sign(self, cmd: contract.Command) -> contract.Command:
        return contract.sign_command(cmd, key_id=self.key_id, private_key=self.private)

    @property
    def check(self) -> contract.SignatureCheck:
        return contract.SignatureCheck({self.key_id: self.public})


def new_keys(key_id: str = "k1") -> Keys:
    key = Ed25519PrivateKey.generate()
    return Keys(
        key_id,
        key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
        key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    )
