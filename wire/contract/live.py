"""Live streams: a live broadcast's audio, in real time, as binary frames.

A live broadcast starts as an ordinary signed play command whose ``audio`` is the start chime
and whose ``live`` names the stream (`LiveStream`). Its frames go, once per group as for
commands, to::

    maeul/v1/{c}/live/all  |  maeul/v1/{c}/live/district/{d}  |  maeul/v1/{c}/live/village/{v}

which every speaker subscribes to beside its command topics. A frame is binary (big-endian)::

    0   1  magic 0x4c ("L")
    1   1  kind: 1 audio (QoS 0), 2 pause, 3 end (QoS 1; the end's seq is the last audio seq)
    2   1  flags: audio: bit 0 starts a talk spurt (re-anchor playout), bits 1-7 the capture
             lag (below); end: an EndReason
    3   1  reserved, 0
    4  16  session: the broadcast id
    20  4  seq: audio frame number, from 0, without gaps at the sender
    24  8  at_ms: when the gateway received the frame (Unix ms): latency is measured from it
    32  8  tag: the first 8 bytes of HMAC-SHA256(LiveStream.key, bytes 0..31 + payload)
    40  -  payload: one 20 ms Opus packet (audio); empty for pause and end

An audio frame is small (about 100 bytes at 24 kbit/s) and stale after a fraction of a second,
so it travels at QoS 0; a speaker conceals a lost one. The tag keeps a forged frame from being
played without costing a signature per frame.

The capture lag says when the talker's microphone heard the frame's first sample, so that a
speaker can measure mouth to horn: code ``c`` = ``flags >> 1``; 0 unknown (a client that does
not stamp its audio), else the capture was ``(c - 1) * 5`` ms before ``at_ms`` (on the
gateway's clock), 127 meaning that long or longer. It rides in the flags, which every speaker
already authenticates as sent and reads only bit 0 of, so older speakers play the frames
unchanged and newer ones play frames from an older gateway (lag unknown).
"""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from wire.contract.base import MessageDocs, Qos, WireError

LIVE_MAGIC: Final = 0x4C
LIVE_HEADER_BYTES: Final = 40
LIVE_TAG_BYTES: Final = 8
# An Opus packet is at most 1275 bytes per frame; a 20 ms packet holds up to three.
MAX_LIVE_PAYLOAD_BYTES: Final = 3 * 1275
MAX_LIVE_FRAME_BYTES: Final = LIVE_HEADER_BYTES + MAX_LIVE_PAYLOAD_BYTES
LIVE_FRAME_QOS: Final = Qos.AT_MOST_ONCE
LIVE_CONTROL_QOS: Final = Qos.AT_LEAST_ONCE
# Subscribed at QoS 1 so that pause and end arrive at QoS 1; audio frames stay QoS 0.
LIVE_SUBSCRIPTION_QOS: Final = Qos.AT_LEAST_ONCE
_LIVE_HEAD = struct.Struct(">BBBB16sIQ")


class LiveKind(IntEnum):
    AUDIO = 1
    PAUSE = 2
    END = 3


class EndReason(IntEnum):
    """Why a live stream ended: ``stopped`` ends ``played``; the others ``failed``/interrupted."""

    STOPPED = 0  # the speaker (a person) stopped, or the longest allowed talk was reached
    CLIENT_LOST = 1  # the talking client vanished and did not come back within the grace period
    FAILED = 2  # the gateway could not go on


LIVE_START_FLAG: Final = 0x01
LIVE_LAG_SHIFT: Final = 1
LIVE_LAG_UNIT_MS: Final = 5
LIVE_LAG_MAX_CODE: Final = 0x7F
# The longest capture lag a frame can say exactly; a longer one is said as this.
MAX_LIVE_LAG_MS: Final = (LIVE_LAG_MAX_CODE - 1) * LIVE_LAG_UNIT_MS


def lag_flags(lag_ms: float | None) -> int:
    """An audio frame's flag bits for a capture `lag_ms` before its ``at_ms`` (None: unknown;
    below 0, a talker's clock estimate a little off, is said as 0)."""
    if lag_ms is None:
        return 0
    code = 1 + round(min(max(lag_ms, 0.0), MAX_LIVE_LAG_MS) / LIVE_LAG_UNIT_MS)
    return code << LIVE_LAG_SHIFT


def new_live_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class LiveFrame:
    kind: LiveKind
    flags: int
    session: str  # hex, as LiveStream.session
    seq: int
    at_ms: int
    payload: bytes = field(default=b"", repr=False)
    tag: bytes = field(default=b"", repr=False)

    @property
    def starts_spurt(self) -> bool:
        return self.kind is LiveKind.AUDIO and bool(self.flags & LIVE_START_FLAG)

    @property
    def captured_ms(self) -> int | None:
        """When the talker captured the frame's first sample (Unix ms, gateway clock), if the
        frame says so."""
        code = self.flags >> LIVE_LAG_SHIFT if self.kind is LiveKind.AUDIO else 0
        if code == 0:
            return None
        return self.at_ms - (code - 1) * LIVE_LAG_UNIT_MS

    def _head(self) -> bytes:
        return _LIVE_HEAD.pack(
            LIVE_MAGIC, self.kind, self.flags, 0, bytes.fromhex(self.session), self.seq, self.at_ms
        )

    def verify(self, key: bytes) -> bool:
        expected = hmac.digest(key, self._head() + self.payload, "sha256")[:LIVE_TAG_BYTES]
        return hmac.compare_digest(expected, self.tag)


def encode_live_frame(frame: LiveFrame, key: bytes) -> bytes:
    """The frame's bytes with a fresh tag (``frame.tag`` is ignored)."""
    if len(frame.payload) > MAX_LIVE_PAYLOAD_BYTES:
        raise WireError(f"a live payload of {len(frame.payload)} bytes is too large")
    head = frame._head()
    tag = hmac.digest(key, head + frame.payload, "sha256")[:LIVE_TAG_BYTES]
    return head + tag + frame.payload


def decode_live_frame(data: bytes) -> LiveFrame:
    """Parse a frame (its tag is checked by `LiveFrame.verify`, with the session's key)."""
    if not LIVE_HEADER_BYTES <= len(data) <= MAX_LIVE_FRAME_BYTES:
        raise WireError(f"a live frame of {len(data)} bytes is outside the allowed size")
    magic, kind, flags, _, session, seq, at_ms = _LIVE_HEAD.unpack_from(data)
    if magic != LIVE_MAGIC or kind not in (1, 2, 3):
        raise WireError("not a live frame")
    return LiveFrame(
        kind=LiveKind(kind),
        flags=flags,
        session=session.hex(),
        seq=seq,
        at_ms=at_ms,
        payload=data[LIVE_HEADER_BYTES:],
        tag=data[LIVE_HEADER_BYTES - LIVE_TAG_BYTES : LIVE_HEADER_BYTES],
    )


LIVE_FRAME_DOC: Final = f"""\
A binary live frame: a {LIVE_HEADER_BYTES}-byte header (big-endian), then the payload.

| offset | bytes | field |
|---|---|---|
| 0 | 1 | magic `0x{LIVE_MAGIC:02x}` |
| 1 | 1 | kind: {", ".join(f"{int(k)} {k.name.lower()}" for k in LiveKind)} |
| 2 | 1 | flags: audio: bit 0 starts a talk spurt (re-anchor the playout), bits 1-7 the \
capture lag `c` (below); end: the reason, \
{", ".join(f"{int(r)} {r.name.lower()}" for r in EndReason)} |
| 3 | 1 | reserved, 0 |
| 4 | 16 | session: the broadcast id |
| 20 | 4 | seq: the audio frame's number, from 0 without gaps; an end carries the last one |
| 24 | 8 | at_ms: when the gateway received the frame (Unix ms): latency is measured from it |
| 32 | {LIVE_TAG_BYTES} | tag: the first {LIVE_TAG_BYTES} bytes of \
HMAC-SHA256(key, bytes 0-31 + payload) |
| {LIVE_HEADER_BYTES} | 0-{MAX_LIVE_PAYLOAD_BYTES} | payload: one 20 ms \
Opus packet (audio); empty for pause and end |

The capture lag lets a speaker measure mouth to horn: `c` = flags >> 1 is 0 when unknown (a
talking client that does not stamp its audio), else the talker's microphone heard the frame's
first sample `(c - 1) × {LIVE_LAG_UNIT_MS}` ms before `at_ms` (gateway clock), \
{LIVE_LAG_MAX_CODE} meaning {MAX_LIVE_LAG_MS} ms or more. Speakers read only bit 0 of an \
audio frame's flags for playout, so a frame plays the same with or without it.

The key is the `live.key` of the signed play command that started the stream (base64url of
32 bytes), so only the gateway that signed the command can make frames a speaker accepts; a
frame with a wrong tag, an unknown session or out of size is dropped. In the examples the
frames are shown in base64; on the wire they are the raw bytes."""

LIVE_AUDIO_MESSAGE: Final = MessageDocs(
    "Live audio frame",
    "20 ms of a live broadcast's audio.",
    f"QoS {int(LIVE_FRAME_QOS)}: a frame is stale after a fraction of a second, so a lost one "
    "is concealed, never resent. Speakers hold a short jitter buffer (`live.jitter_ms` of the "
    "command) and play in `seq` order.",
)

LIVE_CONTROL_MESSAGE: Final = MessageDocs(
    "Live pause or end",
    "The talker paused, or the stream ended.",
    f"QoS {int(LIVE_CONTROL_QOS)}. A pause lets speakers wait up to `live.idle_ms` instead of "
    "`live.stall_ms` for the next frame; an end (its flags the reason) finishes the stream once "
    "every frame up to its `seq` has played: `stopped` is acked `played`, the others `failed` "
    "with reason `interrupted`. Without frames for `stall_ms` a speaker ends the stream on its "
    "own.",
)
