"""What speakers publish: acknowledgements of commands and presence (birth, heartbeat, will)."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from wire.contract.base import (
    HEARTBEAT_QOS,
    MAX_ACK_BYTES,
    MAX_PRESENCE_BYTES,
    PROTOCOL_VERSION,
    CommandId,
    MessageDocs,
    Segment,
    Sha256Hex,
    _dump,
    _load,
    _Message,
)
from wire.contract.enums import AckStatus, Codec


class Ack(_Message):
    """A speaker's own acknowledgement of one command, published on its ack topic."""

    v: Literal[1] = Field(default=PROTOCOL_VERSION, description="Protocol version; always 1.")
    command_id: CommandId = Field(description="The `id` of the command this acknowledges.")
    broadcast_id: CommandId = Field(description="The command's `broadcast_id`.")
    speaker: Segment = Field(
        description=(
            "The speaker's own id. It must equal the `{speaker}` of the topic; the gateway "
            "drops an ack that claims another speaker."
        )
    )
    status: AckStatus = Field(description="How far the speaker got with the command.")
    at_ms: int = Field(
        ge=0,
        description="When the speaker reached this status, in Unix milliseconds (speaker clock).",
    )
    reason: str | None = Field(
        default=None,
        max_length=200,
        description=(
            "Why, for `failed` (a `FailReason`) and `rejected` (a `RejectReason`); with "
            "`received`, a `ReceivedReason` when the command waits for more than its turn. "
            "Other short texts are allowed for causes those lists do not name."
        ),
    )
    # Proof of play: which audio was played, for how long, how loud.
    audio_sha256: Sha256Hex | None = Field(
        default=None,
        description=(
            "With `played`: the `sha256` of the encoding that played; it must be one the "
            "command carried, or the delivery fails with reason `bad_proof`."
        ),
    )
    played_ms: int | None = Field(
        default=None,
        ge=0,
        description=(
            "With `played`: how long it played, in milliseconds: that encoding's `duration_ms` "
            "within max(1000 ms, 5 %) (0 for a test logged without a sound; a live stream's "
            "length as heard, with the chime's `audio_sha256`), or the delivery fails "
            "`bad_proof`."
        ),
    )
    level_dbfs: float | None = Field(
        default=None,
        ge=-200,
        le=20,
        description=(
            "With `played`: the RMS level of all the 16-bit PCM the speaker wrote to its "
            "output, in dBFS (full scale 32768 = 0 dBFS: a full-scale square wave), at most "
            "two decimals. Required above the -70 dBFS silence floor for a command with "
            "`audible` true (else `bad_proof`, see Proof of play); omitted for one logged "
            "without a sound."
        ),
    )
    # A live stream's reception, in the final ack of a live command (see LiveStream).
    frames_received: int | None = Field(
        default=None,
        ge=0,
        description="For a live stream, with its final ack: audio frames that arrived.",
    )
    frames_lost: int | None = Field(
        default=None,
        ge=0,
        description=(
            "For a live stream, with its final ack: audio frames missing or too late to play "
            "(concealed)."
        ),
    )
    latency_ms: int | None = Field(
        default=None,
        ge=0,
        le=600_000,
        description=(
            "For a live stream, with its final ack: the median time from the gateway's receipt "
            "of a frame (`at_ms` in the frame) to its playout, in milliseconds."
        ),
    )
    mouth_p50_ms: int | None = Field(
        default=None,
        description=(
            "For a live stream, with its final ack: the median time from the talker's "
            "microphone (a frame's capture, from its capture lag) to the frame reaching the "
            "speaker's output, in milliseconds on the gateway's clock (the speaker's own clock "
            "corrected by its clock offset when that is beyond what NTP leaves). Absent when "
            "no frame said when it was captured (an older gateway or talking client). The "
            "gateway keeps it only with `mouth_p95_ms` and 0 <= p50 <= p95 <= 600000."
        ),
    )
    mouth_p95_ms: int | None = Field(
        default=None,
        description=(
            "For a live stream, with its final ack: as `mouth_p50_ms`, its 95th percentile."
        ),
    )
    # The signing bytes are `receipt_signing_bytes` of this ack's proof fields (see `Receipt`).
    receipt_sig: str | None = Field(
        default=None,
        max_length=128,
        description=(
            "With `played`, from a speaker with an enrolled receipt key: base64 of its Ed25519 "
            "signature over the receipt's signing bytes (see Proof of play). Missing or not "
            "verifying: the delivery fails `bad_proof`."
        ),
    )
    already_played_as: CommandId | None = Field(
        default=None,
        description=(
            "With `played` for a command that `supersedes` others: the speaker did not play it "
            "because it had already played this one of them (its id); `audio_sha256`, "
            "`played_ms` and `level_dbfs` are that playback's, signed in a new receipt over this "
            "command's own `command_id` and `broadcast_id` and this ack's `at_ms` (see Proof of "
            "play). Repeated in every later ack of the command."
        ),
    )


class Presence(_Message):
    """Birth (``online``), heartbeat and will (``offline``) of a speaker."""

    v: Literal[1] = Field(default=PROTOCOL_VERSION, description="Protocol version; always 1.")
    speaker: Segment = Field(
        description="The speaker's own id; must equal the `{speaker}` of the topic."
    )
    status: Literal["online", "heartbeat", "offline"] = Field(
        description=(
            "`online` is the birth message after every connect, `heartbeat` the periodic "
            "sign of life, `offline` the will (or a clean shutdown)."
        )
    )
    at_ms: int = Field(
        ge=0, description="When the speaker sent this, in Unix milliseconds (speaker clock)."
    )
    codecs: tuple[Codec, ...] = Field(
        default=(),
        description=(
            "Codecs the speaker plays, best first. Sent with the birth message; empty leaves "
            "what the gateway knows unchanged."
        ),
    )
    firmware: str | None = Field(
        default=None, max_length=64, description="Firmware version, for the fleet overview."
    )
    clock_offset_ms: int | None = Field(
        default=None,
        ge=-86_400_000,
        le=86_400_000,
        description=(
            "How far the speaker's clock is ahead of the gateway's (negative: behind), in "
            "milliseconds, as the speaker estimates it: the smallest difference, over its last "
            "messages, between its clock on receipt and the gateway's timestamp in them (a "
            "command's `issued_at_ms`, a live frame's `at_ms`). Speakers are NTP-synchronised "
            "in production, so this stays within the network's one-way delay; the console "
            "flags a speaker off by more than 50 ms. Absent from older speakers."
        ),
    )
    boot_id: str | None = Field(
        default=None,
        max_length=64,
        description="Random id chosen at every boot: a new value means the speaker restarted.",
    )
    session_present: bool | None = Field(
        default=None,
        description=(
            "Birth only: the `session_present` flag of the broker's CONNACK (true: the broker "
            "kept the speaker's session and is delivering the commands queued in it). The "
            "gateway then waits `catchup_grace_s` before sending again, on the speaker topic, "
            "what the speaker has still not acknowledged `received`; absent or false, it "
            "catches up at once."
        ),
    )


def encode_ack(ack: Ack) -> bytes:
    return _dump(ack)


def decode_ack(payload: bytes) -> Ack:
    return _load(Ack, payload, MAX_ACK_BYTES)


def encode_presence(presence: Presence) -> bytes:
    return _dump(presence)


def decode_presence(payload: bytes) -> Presence:
    return _load(Presence, payload, MAX_PRESENCE_BYTES)


ACK_MESSAGE: Final = MessageDocs(
    "Acknowledgement",
    "A speaker's own acknowledgement of one command.",
    "A speaker's own acknowledgement of one command id. For one id the statuses move "
    "`received` → `playing` → `played`, or end in `failed` (reason: a `FailReason`) or "
    "`rejected` (reason: a `RejectReason`). A later copy of a command id the speaker already "
    "recorded is answered by the rule under *Delivery and acknowledgement*: refused when the "
    "copy is forged, unsigned or a replay, else the id's last ack again.\n\n"
    "A payload that is not a valid command but still has a readable `id` and `broadcast_id` is "
    "answered `rejected`/`malformed`; without them the speaker stays silent.",
)

PRESENCE_BIRTH_MESSAGE: Final = MessageDocs(
    "Birth",
    "`online`: the speaker is connected (retained).",
    "Published, retained, right after every connect, with the codecs the speaker plays and its "
    "firmware.",
)

PRESENCE_HEARTBEAT_MESSAGE: Final = MessageDocs(
    "Heartbeat",
    f"`heartbeat`: the speaker is still there (QoS {int(HEARTBEAT_QOS)}, not retained).",
    f"Published periodically. QoS {int(HEARTBEAT_QOS)} and not retained, so a lost heartbeat "
    "costs nothing and the retained birth or will stays the topic's state.",
)

PRESENCE_WILL_MESSAGE: Final = MessageDocs(
    "Will",
    "`offline`: the speaker is gone (retained).",
    "Registered as the MQTT Will at CONNECT (retained), so the broker publishes it when the "
    "connection drops without a DISCONNECT. A speaker that shuts down cleanly publishes the "
    "same message itself first, because a normal DISCONNECT discards the Will. Its `at_ms` is "
    "when the Will was registered (the connect time): the broker publishes it unchanged.\n\n"
    "An empty retained payload on a presence topic only clears the retained state (a speaker "
    "taken out of service); receivers ignore it.",
)
