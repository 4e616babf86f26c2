"""The examples of ``openapi/asyncapi.yaml``: real contract objects, signed with published keys.

The keys here are examples: they are printed in the document, so never use them. Every example is
built and encoded by the contract itself, so an example cannot drift from what goes on the wire.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from wire import contract
from wire.contract import AckStatus, Category, Codec, FailReason, RejectReason

EXAMPLE_KEY_ID: Final = "example-2026"
EXAMPLE_PRIVATE_KEY: Final = hashlib.sha256(b"maeul asyncapi example key: never use").digest()
EXAMPLE_PUBLIC_KEY: Final = base64.b64encode(
    Ed25519PrivateKey.from_private_bytes(EXAMPLE_PRIVATE_KEY)
    .public_key()
    .public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode("ascii")

CITY, DISTRICT, VILLAGE, SPEAKER = "jinju", "munsan", "sammun", "sammun-01"
ISSUED_MS: Final = 1_772_409_600_000  # 2026-03-02 09:00 KST
NOTICE_ID: Final = "7d0c3a5e9b1f4c2a8e6d0b3f5a7c9e1d"
NOTICE_BROADCAST: Final = "4b8e2f6a0c3d5e7f9a1b2c4d6e8f0a1b"
WARNING_ID: Final = "c5a1e9d3b7f24068a2c4e6f8b0d1a3c5"
WARNING_BROADCAST: Final = "e2f4a6c8b0d1e3f5a7c9b1d3e5f7a9c0"
CANCEL_ID: Final = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
FORGED_ID: Final = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
RESEND_ID: Final = "3c5e7a9b1d2f4068a0c2e4f6b8d0a2c4"
RESEND_BROADCAST: Final = "6a8c0e2f4b5d7e9f1a3c5e7b9d1f3a5c"
FORGED_BROADCAST: Final = "f9e8d7c6b5a4039281706f5e4d3c2b1a"
GATEWAY_URL: Final = "https://gateway.example.org"


def _fake_audio(label: str, size: int) -> bytes:
    """Illustrative bytes standing in for an encoded clip."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _url_audio(codec: Codec, mime_type: str, label: str, size: int) -> contract.AudioRef:
    data = _fake_audio(label, size)
    sha = hashlib.sha256(data).hexdigest()
    return contract.AudioRef(
        codec=codec,
        mime_type=mime_type,
        sha256=sha,
        size=size,
        duration_ms=41_500,
        # An illustrative signature: the real ones are made under the gateways' own key.
        url=f"{GATEWAY_URL}/api/v1/audio/{sha}?expires={(ISSUED_MS + 1_860_000) // 1000}"
        f"&sig={base64.urlsafe_b64encode(hashlib.sha256(sha.encode()).digest()).decode()[:43]}",
    )


def _signed(command: contract.Command) -> contract.Command:
    return contract.sign_command(command, key_id=EXAMPLE_KEY_ID, private_key=EXAMPLE_PRIVATE_KEY)


def example_commands() -> dict[str, contract.Command]:
    notice = _signed(
        contract.Command(
            type="play",
            id=NOTICE_ID,
            broadcast_id=NOTICE_BROADCAST,
            city=CITY,
            scope=contract.Scope(kind="village", ids=(VILLAGE,)),
            category=Category.VILLAGE_NOTICE,
            priority=contract.DEFAULT_PRIORITY[Category.VILLAGE_NOTICE],
            issued_at_ms=ISSUED_MS,
            expires_at_ms=ISSUED_MS + 3_600_000,
            nonce="5f1d3b7a9c2e4f6081a3c5e7",
            title="마을회관 공지",
            text="오늘 오후 2시 마을회관에서 주민 회의가 있습니다.",
            audio=(
                contract.inline_audio(
                    codec=Codec.OPUS,
                    mime_type="audio/ogg",
                    data=_fake_audio("notice opus", 96),
                    duration_ms=4_200,
                ),
            ),
        )
    )
    warning = _signed(
        contract.Command(
            type="play",
            id=WARNING_ID,
            broadcast_id=WARNING_BROADCAST,
            city=CITY,
            scope=contract.Scope(kind="district", ids=(DISTRICT,)),
            category=Category.DISASTER,
            priority=contract.DEFAULT_PRIORITY[Category.DISASTER],
            issued_at_ms=ISSUED_MS + 60_000,
            expires_at_ms=ISSUED_MS + 60_000 + 1_800_000,
            nonce="a0b1c2d3e4f5061728394a5b",
            title="호우 경보",
            audio=(
                _url_audio(Codec.OPUS, "audio/ogg", "warning opus", 331_776),
                _url_audio(Codec.MP3, "audio/mpeg", "warning mp3", 664_320),
            ),
        )
    )
    cancel = _signed(
        contract.Command(
            type="cancel",
            id=CANCEL_ID,
            broadcast_id=WARNING_BROADCAST,
            city=CITY,
            scope=contract.Scope(kind="district", ids=(DISTRICT,)),
            category=Category.DISASTER,
            priority=contract.DEFAULT_PRIORITY[Category.DISASTER],
            issued_at_ms=ISSUED_MS + 120_000,
            expires_at_ms=ISSUED_MS + 60_000 + 1_800_000,
            nonce="0f1e2d3c4b5a69788796a5b4",
        )
    )
    resend = _signed(
        notice.model_copy(
            update={
                "id": RESEND_ID,
                "broadcast_id": RESEND_BROADCAST,
                "scope": contract.Scope(kind="speaker", ids=(SPEAKER,)),
                "issued_at_ms": ISSUED_MS + 300_000,
                "expires_at_ms": ISSUED_MS + 300_000 + 3_600_000,
                "nonce": "7a9c1e3f5b7d9f1a3c5e7b9d",
                "supersedes": (NOTICE_ID,),
                "key_id": None,
                "sig": None,
            }
        )
    )
    return {
        "play-inline": notice,
        "play-url": warning,
        "cancel": cancel,
        "resend": resend,
    }


# The example speaker's receipt key (a fixed seed, so the document is reproducible).
EXAMPLE_RECEIPT_KEY = bytes(range(32))


def _receipt_sig(command: contract.Command, at_ms: int, sha256: str, played_ms: int) -> str:
    receipt = contract.Receipt(
        command_id=command.id,
        broadcast_id=command.broadcast_id,
        speaker=SPEAKER,
        audio_sha256=sha256,
        played_ms=played_ms,
        level_dbfs=-16.2,
        at_ms=at_ms,
    )
    sig = contract.sign_receipt(receipt, EXAMPLE_RECEIPT_KEY).sig
    assert sig is not None
    return sig


def example_acks() -> dict[str, contract.Ack]:
    notice = example_commands()["play-inline"]
    base = {
        "command_id": notice.id,
        "broadcast_id": notice.broadcast_id,
        "speaker": SPEAKER,
    }
    return {
        "received": contract.Ack(**base, status=AckStatus.RECEIVED, at_ms=ISSUED_MS + 180),
        "playing": contract.Ack(**base, status=AckStatus.PLAYING, at_ms=ISSUED_MS + 2_950),
        "played": contract.Ack(
            **base,
            status=AckStatus.PLAYED,
            at_ms=ISSUED_MS + 7_160,
            audio_sha256=notice.audio[0].sha256,
            played_ms=notice.audio[0].duration_ms,
            level_dbfs=-16.2,
            receipt_sig=_receipt_sig(
                notice, ISSUED_MS + 7_160, notice.audio[0].sha256, notice.audio[0].duration_ms
            ),
        ),
        "failed": contract.Ack(
            command_id=WARNING_ID,
            broadcast_id=WARNING_BROADCAST,
            speaker=SPEAKER,
            status=AckStatus.FAILED,
            at_ms=ISSUED_MS + 120_240,
            reason=FailReason.CANCELLED,
        ),
        "played-as": contract.Ack(
            command_id=RESEND_ID,
            broadcast_id=RESEND_BROADCAST,
            speaker=SPEAKER,
            status=AckStatus.PLAYED,
            at_ms=ISSUED_MS + 300_400,
            audio_sha256=notice.audio[0].sha256,
            played_ms=4_200,
            level_dbfs=-16.2,
            already_played_as=notice.id,
        ),
        "heard": contract.sign_heard(
            contract.Ack(**base, status=AckStatus.HEARD, at_ms=ISSUED_MS + 31_500),
            EXAMPLE_RECEIPT_KEY,
        ),
        "rejected": contract.Ack(
            command_id=FORGED_ID,
            broadcast_id=FORGED_BROADCAST,
            speaker=SPEAKER,
            status=AckStatus.REJECTED,
            at_ms=ISSUED_MS + 150,
            reason=RejectReason.BAD_SIGNATURE,
        ),
    }


def example_presence() -> dict[str, contract.Presence]:
    boot = "b3c9e1f07a2d"
    return {
        "birth": contract.Presence(
            speaker=SPEAKER,
            status="online",
            at_ms=ISSUED_MS - 600_000,
            codecs=(Codec.OPUS, Codec.MP3),
            firmware="2.4.1",
            boot_id=boot,
            session_present=True,
        ),
        "heartbeat": contract.Presence(
            speaker=SPEAKER, status="heartbeat", at_ms=ISSUED_MS - 570_000, boot_id=boot
        ),
        "will": contract.Presence(
            speaker=SPEAKER, status="offline", at_ms=ISSUED_MS - 600_000, boot_id=boot
        ),
    }


# What each example shows, by example name.
COMMAND_EXAMPLES: Final[Mapping[str, str]] = {
    "play-inline": "A village notice with a short Opus clip inline (illustrative bytes).",
    "play-url": "A disaster warning for a district, two encodings behind URLs.",
    "cancel": "Cancel the disaster warning.",
    "resend": (
        "The village notice resent to one speaker that missed it: it supersedes the first command."
    ),
}
PRESENCE_EXAMPLES: Final[Mapping[str, str]] = {
    "birth": "After connecting.",
    "heartbeat": "A heartbeat.",
    "will": "The Will, as registered.",
}
ACK_EXAMPLES: Final[Mapping[str, str]] = {
    "received": "The village notice passed every check and is queued.",
    "playing": "The village notice started playing.",
    "played": "The village notice played to the end, with proof of play.",
    "failed": "The disaster warning was cancelled while queued (a `FailReason`).",
    "played-as": (
        "A resend of the village notice to a speaker that had played the notice after all: "
        "not played again, answered from that playback."
    ),
    "heard": (
        "An indoor receiver that played the village notice: a resident pressed 들었어요 "
        "(signed with its receipt key)."
    ),
    "rejected": "A command whose signature does not verify (a `RejectReason`).",
}


LIVE_EXAMPLE_KEY: Final = (
    base64.urlsafe_b64encode(hashlib.sha256(b"maeul asyncapi example live key: never use").digest())
    .decode("ascii")
    .rstrip("=")
)


def example_live_frames(kind: str) -> dict[str, tuple[str, bytes]]:
    """Real frames, tagged with the published example key (the `key` of a live command)."""
    key = base64.urlsafe_b64decode(LIVE_EXAMPLE_KEY + "=")

    def frame(kind: contract.LiveKind, flags: int, seq: int, payload: bytes = b"") -> bytes:
        at_ms = ISSUED_MS + 1500 + 20 * seq
        head = contract.LiveFrame(kind, flags, WARNING_BROADCAST, seq, at_ms, payload)
        return contract.encode_live_frame(head, key)

    opus = _fake_audio("opus frame", 60)
    if kind == "LiveAudio":
        return {
            "first": (
                "The first 20 ms of a talk spurt (illustrative Opus bytes).",
                frame(contract.LiveKind.AUDIO, contract.LIVE_START_FLAG, 0, opus),
            ),
            "next": ("The next frame.", frame(contract.LiveKind.AUDIO, 0, 1, opus)),
        }
    return {
        "pause": ("The talker paused after frame 41.", frame(contract.LiveKind.PAUSE, 0, 41)),
        "end": (
            "Stopped after frame 41: speakers ack `played`.",
            frame(contract.LiveKind.END, contract.EndReason.STOPPED, 41),
        ),
    }
