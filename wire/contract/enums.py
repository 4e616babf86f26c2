"""The contract's closed vocabularies: categories, codecs, ack statuses and reasons.

Beside each enum, its prose (`EnumDocs`): what the generated `openapi/asyncapi.yaml` says about
it and each of its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from wire.contract.base import CLOCK_SKEW_MS


@dataclass(frozen=True, slots=True)
class EnumDocs:
    """An enum's documentation: a sentence introducing it and the meaning of each value."""

    intro: str
    meanings: Mapping[StrEnum, str]


class Category(StrEnum):
    VILLAGE_NOTICE = "village_notice"
    ADMINISTRATIVE = "administrative"
    CRIME_PREVENTION = "crime_prevention"
    DISASTER = "disaster"


# Higher plays first and interrupts lower; cities can reorder through their settings.
DEFAULT_PRIORITY: Final[Mapping[Category, int]] = {
    Category.DISASTER: 40,
    Category.CRIME_PREVENTION: 30,
    Category.ADMINISTRATIVE: 20,
    Category.VILLAGE_NOTICE: 10,
}

CATEGORY_DOCS: Final = EnumDocs(
    "What kind of broadcast a command is. Each has a default priority (cities can reorder them):",
    {
        Category.VILLAGE_NOTICE: "notices of the village office",
        Category.ADMINISTRATIVE: "notices of the city or district administration",
        Category.CRIME_PREVENTION: "crime-prevention messages",
        Category.DISASTER: "disaster warnings",
    },
)


class Codec(StrEnum):
    OPUS = "opus"
    MP3 = "mp3"


CODEC_DOCS: Final = EnumDocs(
    "Audio encodings on the wire:",
    {Codec.OPUS: "Opus in Ogg (`audio/ogg`)", Codec.MP3: "MP3 (`audio/mpeg`)"},
)


class AckStatus(StrEnum):
    RECEIVED = "received"
    PLAYING = "playing"
    PLAYED = "played"
    FAILED = "failed"
    REJECTED = "rejected"
    PREEMPTED = "preempted"
    HEARD = "heard"


ACK_STATUS_DOCS: Final = EnumDocs(
    "How far a speaker got with one command id. Statuses only move forward: "
    "`received` → `playing` → `played`, or end in `failed` or `rejected`; the one loop is "
    "`playing` → `preempted` → `playing` (from the start).",
    {
        AckStatus.RECEIVED: (
            "the command passed every check and is queued; inline audio has been checked "
            "against its `sha256` (audio behind a URL is fetched and checked after this ack)"
        ),
        AckStatus.PLAYING: "the audio started (recorded before it starts: never played twice)",
        AckStatus.PREEMPTED: (
            "a higher-priority command interrupted it; it waits in the queue and plays again "
            "from the start (`playing`, `played`), or ends `failed`/`expired` if its "
            "`expires_at_ms` passes first"
        ),
        AckStatus.PLAYED: (
            "the audio played to the end; carries `audio_sha256`, `played_ms`, `level_dbfs` "
            "and, from a speaker with an enrolled receipt key, `receipt_sig`"
        ),
        AckStatus.FAILED: (
            "an accepted command did not play to the end; `reason` is a `FailReason`"
        ),
        AckStatus.REJECTED: "the speaker refused the command; `reason` is a `RejectReason`",
        AckStatus.HEARD: (
            "indoor receivers only, after `played`: a resident pressed its 들었어요 button; "
            "carries `receipt_sig`, the receiver's signature over the heard signing bytes (see "
            "Proof of play). Not a state of the delivery: it records that a household heard it"
        ),
    },
)


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    OUT_OF_SCOPE = "out_of_scope"
    BAD_SIGNATURE = "bad_signature"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    REPLAYED = "replayed"
    UNSUPPORTED_CODEC = "unsupported_codec"
    INTEGRITY = "integrity"


REJECT_REASON_DOCS: Final = EnumDocs(
    "Why a speaker refuses a command (`rejected` acks). Only `Ack.reason` carries them, as "
    "a plain string.",
    {
        RejectReason.MALFORMED: (
            "the payload is not a valid command, but its `id` and `broadcast_id` could "
            "still be read (otherwise the speaker stays silent)"
        ),
        RejectReason.EXPIRED: "it arrived at or after `expires_at_ms`",
        RejectReason.NOT_YET_VALID: (
            f"`issued_at_ms` is more than {CLOCK_SKEW_MS} ms ahead of the speaker's "
            "clock; not remembered, so a later copy plays once the clock is right"
        ),
        RejectReason.OUT_OF_SCOPE: "`city` or `scope` does not cover this speaker",
        RejectReason.BAD_SIGNATURE: "the signature does not verify with the key named by `key_id`",
        RejectReason.UNSIGNED: (
            "the speaker has gateway keys but the command has no `sig` or `key_id`"
        ),
        RejectReason.UNKNOWN_KEY: (
            "`key_id` names a key the speaker does not trust and could not learn from the "
            "gateway's key ring, fetched after the command arrived (not listed there, or not "
            "vouched for by a trusted key). Not final: the gateway keeps the delivery open "
            "and asks again, signed by its current key"
        ),
        RejectReason.REVOKED_KEY: (
            "`key_id` names a key the gateway's key ring revoked (see *Key revocation*): "
            "refused at once, without asking the ring again. Not final either: the gateway "
            "asks again, signed by its current key"
        ),
        RejectReason.REPLAYED: (
            "an authentic copy of a command that already played, with the same `nonce` as "
            "the copy that played: a captured command sent again (the gateway's own "
            "retries carry a fresh nonce and are answered with the last ack instead)"
        ),
        RejectReason.UNSUPPORTED_CODEC: (
            "none of the `audio` entries is in a codec the speaker plays"
        ),
        RejectReason.INTEGRITY: (
            "the audio bytes do not match `size` and `sha256`. Inline audio is checked "
            "before `received`; audio behind a URL is fetched after `received`, so its "
            "mismatch is acked `rejected`/`integrity` after `received` (never `failed`). "
            "Either way the id stays open: a later copy may still play"
        ),
    },
)


# Refusals of one copy of a command, not of the command id: a forged or replayed copy. A speaker
# journals none of them, and once it has accepted an authentic copy of an id, such a refusal
# says only that someone sent a bad copy; the gateway records it as a security event and keeps
# the delivery as it was.
COPY_REFUSALS: Final = frozenset(
    {
        RejectReason.MALFORMED,
        RejectReason.UNSIGNED,
        RejectReason.UNKNOWN_KEY,
        RejectReason.REVOKED_KEY,
        RejectReason.BAD_SIGNATURE,
        RejectReason.REPLAYED,
    }
)


class FailReason(StrEnum):
    """Why a speaker reports ``failed`` for a command it had accepted (``received``)."""

    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    PREEMPTED = "preempted"
    FETCH_FAILED = "fetch_failed"
    UNDECODABLE = "undecodable"
    PLAYER_ERROR = "player_error"
    SUPERSEDED = "superseded"
    MUTED = "muted"


FAIL_REASON_DOCS: Final = EnumDocs(
    "Why an accepted command did not play to the end (`failed` acks). Only `Ack.reason` "
    "carries them, as a plain string.",
    {
        FailReason.EXPIRED: "its turn came after `expires_at_ms`; it never started",
        FailReason.CANCELLED: (
            "a `cancel` for its broadcast arrived while it was queued or playing, or before "
            "it (the gateway also sends one to a speaker it gave up waiting for)"
        ),
        FailReason.SUPERSEDED: (
            "a command that `supersedes` it (a resend of the same message) is held or was "
            "played: the message plays once"
        ),
        FailReason.INTERRUPTED: (
            "the speaker restarted while it was playing; it is not played again"
        ),
        FailReason.PREEMPTED: (
            "a higher-priority command took over the loudspeaker; the speaker's reason for "
            "stopping the sound, acknowledged as the status `preempted`, not as `failed`"
        ),
        FailReason.FETCH_FAILED: (
            "the audio behind its URL could not be fetched; a later copy may still play"
        ),
        FailReason.UNDECODABLE: "the audio matched its hash but did not decode",
        FailReason.PLAYER_ERROR: "the sound output failed",
        FailReason.MUTED: (
            "an indoor receiver whose household set its volume to 0 (see `ReceiverSettings`): "
            "a notice other than a disaster alert is not played"
        ),
    },
)


class ReceivedReason(StrEnum):
    """Why a ``received`` ack says more than that the command is queued."""

    HELD_QUIET_HOURS = "held_quiet_hours"


RECEIVED_REASON_DOCS: Final = EnumDocs(
    "What a `received` ack's `reason` may say: the command is accepted but waits for more than "
    "its turn. Absent for a command that just waits its turn.",
    {
        ReceivedReason.HELD_QUIET_HOURS: (
            "an indoor receiver whose household holds notices in quiet hours (`hold_quiet` in "
            "`ReceiverSettings`) got one other than a disaster alert in them: it plays when they "
            "end (`playing`, `played`), or ends `failed` if it expires or is cancelled first"
        ),
    },
)

# Every enum's prose, for the document generators.
ENUM_DOCS: Final[Mapping[type[StrEnum], EnumDocs]] = {
    Category: CATEGORY_DOCS,
    Codec: CODEC_DOCS,
    AckStatus: ACK_STATUS_DOCS,
    RejectReason: REJECT_REASON_DOCS,
    FailReason: FAIL_REASON_DOCS,
    ReceivedReason: RECEIVED_REASON_DOCS,
}
