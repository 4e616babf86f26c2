"""The MQTT wire contract between the gateway and speakers: topics, payloads, QoS and signatures.

This module is the only place that knows topic strings and payload shapes. It imports neither
FastAPI nor SQLAlchemy, so the gateway, the simulator and the device agent all use the same code,
and `openapi/asyncapi.yaml` documents exactly what is here.

Topic tree (``{c}`` city code, ``{d}`` district code, ``{v}`` village code, ``{s}`` speaker id)::

    maeul/v1/{c}/cmd/all            commands for every speaker of the city  (gateway -> speakers)
    maeul/v1/{c}/cmd/district/{d}   commands for every speaker of a district
    maeul/v1/{c}/cmd/village/{v}    commands for every speaker of a village
    maeul/v1/{c}/cmd/speaker/{s}    commands for one speaker (retries, catch-up, resend)
    maeul/v1/{c}/ack/{s}            a speaker's own acknowledgements          (speaker -> gateway)
    maeul/v1/{c}/presence/{s}       birth, heartbeat and will (retained)      (speaker -> gateway)

The broker does the fan-out for group topics; every speaker still acknowledges on its own topic,
and the gateway reads acks and presence through MQTT 5 shared subscriptions so that any number
of gateway replicas split them. A broker PUBACK only says the broker has the command; a delivery
moves on only when the speaker's own ack arrives.

Exceptions::

    WireError            a payload or topic that does not follow this contract
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROTOCOL_VERSION: Final = 1
TOPIC_ROOT: Final = "maeul/v1"
SHARE_GROUP: Final = "maeul-gateway"

MAX_COMMAND_BYTES: Final = 4 * 1024 * 1024
MAX_ACK_BYTES: Final = 4 * 1024
MAX_PRESENCE_BYTES: Final = 4 * 1024
# Clocks on speakers drift; a command issued up to this far in the future is still accepted.
CLOCK_SKEW_MS: Final = 30_000

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class WireError(ValueError):
    """A payload or topic that does not follow the contract."""


class Qos(IntEnum):
    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1


COMMAND_QOS: Final = Qos.AT_LEAST_ONCE
ACK_QOS: Final = Qos.AT_LEAST_ONCE
PRESENCE_QOS: Final = Qos.AT_LEAST_ONCE
HEARTBEAT_QOS: Final = Qos.AT_MOST_ONCE


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


class AckStatus(StrEnum):
    RECEIVED = "received"
    PLAYING = "playing"
    PLAYED = "played"
    FAILED = "failed"
    REJECTED = "rejected"
    # Interrupted by a higher-priority command: queued again, it plays from the start later
    # (``playing``, ``played``) or ends ``failed``/``expired`` if its turn comes too late.
    PREEMPTED = "preempted"


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    OUT_OF_SCOPE = "out_of_scope"
    BAD_SIGNATURE = "bad_signature"
    UNSIGNED = "unsigned"
    # Signed under a key id the speaker does not trust and could not learn from the key ring.
    UNKNOWN_KEY = "unknown_key"
    # Signed under a key the gateway has revoked (the speaker learned it from the key ring).
    REVOKED_KEY = "revoked_key"
    # The same id and nonce again after the command ended: a captured command sent once more.
    REPLAYED = "replayed"
    UNSUPPORTED_CODEC = "unsupported_codec"
    INTEGRITY = "integrity"


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


class Codec(StrEnum):
    OPUS = "opus"
    MP3 = "mp3"


# --------------------------------------------------------------------------------------------
# Topics


def _segment(value: str, what: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise WireError(f"{what} {value!r} is not a valid topic segment ([A-Za-z0-9_-]{{1,64}})")
    return value


def is_valid_segment(value: str) -> bool:
    return bool(_SEGMENT.fullmatch(value))


def command_topic_all(city: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/all"


def command_topic_district(city: str, district: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/district/{_segment(district, 'district')}"


def command_topic_village(city: str, village: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/village/{_segment(village, 'village')}"


def command_topic_speaker(city: str, speaker: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/cmd/speaker/{_segment(speaker, 'speaker')}"


def ack_topic(city: str, speaker: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/ack/{_segment(speaker, 'speaker')}"


def presence_topic(city: str, speaker: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/presence/{_segment(speaker, 'speaker')}"


def ack_subscription(group: str = SHARE_GROUP) -> str:
    """The gateway's shared subscription for every speaker's acks, in every city."""
    return f"$share/{_segment(group, 'share group')}/{TOPIC_ROOT}/+/ack/+"


def presence_subscription(group: str = SHARE_GROUP) -> str:
    return f"$share/{_segment(group, 'share group')}/{TOPIC_ROOT}/+/presence/+"


def speaker_subscriptions(city: str, district: str, village: str, speaker: str) -> list[str]:
    """Every command topic one speaker listens on."""
    return [
        command_topic_all(city),
        command_topic_district(city, district),
        command_topic_village(city, village),
        command_topic_speaker(city, speaker),
    ]


def parse_speaker_topic(topic: str, kind: Literal["ack", "presence"]) -> tuple[str, str]:
    """Return (city, speaker) of an ack or presence topic, or raise WireError."""
    parts = topic.split("/")
    if (
        len(parts) != 5
        or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT
        or parts[3] != kind
        or not is_valid_segment(parts[2])
        or not is_valid_segment(parts[4])
    ):
        raise WireError(f"not a {kind} topic: {topic[:200]!r}")
    return parts[2], parts[4]


# --------------------------------------------------------------------------------------------
# Payloads


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Segment = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Scope(_Message):
    """Whom a command is for; signed with it, so a command cannot be replayed to another village."""

    kind: Literal["all", "district", "village", "speaker"]
    ids: tuple[Segment, ...] = ()

    @model_validator(mode="after")
    def _ids_match_kind(self) -> Scope:
        if self.kind == "all" and self.ids:
            raise ValueError("scope 'all' takes no ids")
        if self.kind != "all" and not self.ids:
            raise ValueError(f"scope {self.kind!r} needs at least one id")
        return self

    def covers(self, identity: SpeakerIdentity) -> bool:
        if self.kind == "all":
            return True
        own = {
            "district": identity.district,
            "village": identity.village,
            "speaker": identity.speaker,
        }[self.kind]
        return own in self.ids


class AudioRef(_Message):
    """One encoding of the message. The bytes travel inline (base64) or behind an HTTP URL."""

    codec: Codec
    mime_type: str
    sha256: Sha256Hex
    size: int = Field(ge=1)
    duration_ms: int = Field(ge=0)
    data: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AudioRef:
        if (self.data is None) == (self.url is None):
            raise ValueError("an audio reference carries exactly one of 'data' and 'url'")
        return self

    def inline_bytes(self) -> bytes:
        if self.data is None:
            raise WireError("audio is not inline")
        try:
            return base64.b64decode(self.data, validate=True)
        except binascii.Error as exc:
            raise WireError("inline audio is not valid base64") from exc


class LiveStream(_Message):
    """The stream a live command's speakers play after its chime (see the live section below).

    The frames travel on the speaker's live topics; ``key`` authenticates them. It is covered by
    the command's signature, so only the gateway that signed the command can have chosen it.
    """

    session: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    codec: Literal["opus"] = "opus"
    frame_ms: Literal[20] = 20
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
    jitter_ms: int = Field(default=80, ge=20, le=1000)
    # Without a frame for this long (paused: idle_ms) the speaker ends the stream by itself.
    stall_ms: int = Field(default=3000, ge=200, le=60_000)
    idle_ms: int = Field(default=60_000, ge=1000, le=3_600_000)

    def key_bytes(self) -> bytes:
        return base64.urlsafe_b64decode(self.key + "=")


CommandId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
# How many earlier commands one command may supersede (a resend of a resend ...).
MAX_SUPERSEDES: Final = 32


class Command(_Message):
    """A command to speakers. A speaker acts on a given ``id`` at most once."""

    v: Literal[1] = PROTOCOL_VERSION
    type: Literal["play", "cancel"]
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    broadcast_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    city: Segment
    scope: Scope
    category: Category
    priority: int = Field(ge=0, le=1000)
    # "test" and "exercise" are never a real alert: kept apart in reports, never pre-empting a
    # real broadcast, and introduced as a test in their own audio.
    mode: Literal["live", "test", "exercise"] = "live"
    # False only for a test or exercise the city wants logged, not heard: the speaker checks it,
    # journals it and acks it ``played`` with ``played_ms`` 0, without a sound.
    audible: bool = True
    issued_at_ms: int = Field(ge=0)
    expires_at_ms: int = Field(ge=0)
    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")]
    title: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, max_length=5000)
    audio: tuple[AudioRef, ...] = ()
    # A live broadcast: ``audio`` is its start chime, then the speaker plays this stream.
    live: LiveStream | None = None
    # A resend: the earlier commands (ids) carrying the same message that this one stands in
    # for. A speaker plays the message once: it drops any of them still queued or arriving
    # later (``failed``/``superseded``), and answers this command ``played`` with
    # ``already_played_as`` if it already played one of them.
    # Absent (not empty) when it supersedes nothing.
    supersedes: tuple[CommandId, ...] | None = Field(
        default=None, min_length=1, max_length=MAX_SUPERSEDES
    )
    key_id: str | None = Field(default=None, max_length=64)
    sig: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _consistent(self) -> Command:
        if self.expires_at_ms <= self.issued_at_ms:
            raise ValueError("a command must expire after it is issued")
        if self.type == "play" and not self.audio:
            raise ValueError("a play command needs audio")
        if not self.audible and self.mode == "live":
            raise ValueError("a real (mode 'live') command is always audible")
        if self.supersedes is not None and self.id in self.supersedes:
            raise ValueError("a command cannot supersede itself")
        return self

    def signing_bytes(self) -> bytes:
        """Canonical bytes covered by the signature: everything but the signature itself.

        Inline audio is covered through its sha256, so the speaker checks the bytes against it.
        """
        body = self.model_dump(mode="json", exclude={"sig"})
        if body.get("live") is None:
            body.pop("live", None)  # commands without a stream sign the same bytes as before
        if not body.get("supersedes"):
            body.pop("supersedes", None)  # nor do commands that supersede nothing
        body["audio"] = [
            {k: v for k, v in ref.items() if k not in ("data", "url")} for ref in body["audio"]
        ]
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def audio_for(self, codecs: Iterable[str]) -> AudioRef | None:
        """The first encoding, in the command's order, that the speaker can play."""
        playable = set(codecs)
        return next((ref for ref in self.audio if ref.codec in playable), None)


class Ack(_Message):
    """A speaker's own acknowledgement of one command, published on its ack topic."""

    v: Literal[1] = PROTOCOL_VERSION
    command_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    broadcast_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    speaker: Segment
    status: AckStatus
    at_ms: int = Field(ge=0)
    reason: str | None = Field(default=None, max_length=200)
    # Proof of play: which audio was played, for how long, how loud.
    audio_sha256: Sha256Hex | None = None
    played_ms: int | None = Field(default=None, ge=0)
    level_dbfs: float | None = Field(default=None, ge=-200, le=20)
    # A live stream's reception, in the final ack of a live command (see LiveStream).
    frames_received: int | None = Field(default=None, ge=0)
    frames_lost: int | None = Field(default=None, ge=0)
    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    # A ``played`` ack's receipt: the speaker's Ed25519 signature over `receipt_signing_bytes`
    # of this ack's proof fields (see `Receipt`), base64.
    receipt_sig: str | None = Field(default=None, max_length=128)
    # With ``played`` for a command that supersedes others: the speaker had already played
    # this one of them and did not play again; the proof is that playback's.
    already_played_as: CommandId | None = None


class Presence(_Message):
    """Birth (``online``), heartbeat and will (``offline``) of a speaker."""

    v: Literal[1] = PROTOCOL_VERSION
    speaker: Segment
    status: Literal["online", "heartbeat", "offline"]
    at_ms: int = Field(ge=0)
    codecs: tuple[Codec, ...] = ()
    firmware: str | None = Field(default=None, max_length=64)
    boot_id: str | None = Field(default=None, max_length=64)
    # Births only: the broker's CONNACK said it kept this speaker's session (MQTT
    # session_present), so the commands published to it while it was away are on their way to
    # it from the broker. The gateway then waits a grace before catching up what the speaker has
    # still not acknowledged; absent or false, it catches up at once.
    session_present: bool | None = None


class SpeakerIdentity(_Message):
    """Where a speaker sits; used to subscribe and to check a command's scope."""

    city: Segment
    district: Segment
    village: Segment
    speaker: Segment

    def subscriptions(self) -> list[str]:
        return speaker_subscriptions(self.city, self.district, self.village, self.speaker)


_M = TypeVar("_M", bound=BaseModel)


def _dump(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def _load(model: type[_M], payload: bytes, limit: int) -> _M:
    if len(payload) > limit:
        raise WireError(f"{model.__name__} payload of {len(payload)} bytes exceeds {limit}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise WireError(f"invalid {model.__name__}: {where}: {first.get('msg')}") from None


def encode_command(command: Command) -> bytes:
    return _dump(command)


def decode_command(payload: bytes) -> Command:
    return _load(Command, payload, MAX_COMMAND_BYTES)


def encode_ack(ack: Ack) -> bytes:
    return _dump(ack)


def decode_ack(payload: bytes) -> Ack:
    return _load(Ack, payload, MAX_ACK_BYTES)


def encode_presence(presence: Presence) -> bytes:
    return _dump(presence)


def decode_presence(payload: bytes) -> Presence:
    return _load(Presence, payload, MAX_PRESENCE_BYTES)


def new_id() -> str:
    return secrets.token_hex(16)


def new_nonce() -> str:
    return secrets.token_hex(12)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def inline_audio(*, codec: Codec, mime_type: str, data: bytes, duration_ms: int) -> AudioRef:
    return AudioRef(
        codec=codec,
        mime_type=mime_type,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        duration_ms=duration_ms,
        data=base64.b64encode(data).decode("ascii"),
    )


def message_expiry_seconds(command: Command, at_ms: int) -> int:
    """MQTT 5 message expiry for a command, so the broker drops it when it goes stale."""
    return max(1, (command.expires_at_ms - at_ms + 999) // 1000)


# --------------------------------------------------------------------------------------------
# Checks a speaker makes before acting on a command


def check_command(
    command: Command,
    identity: SpeakerIdentity,
    *,
    at_ms: int,
    verify: SignatureCheck | None = None,
) -> RejectReason | None:
    """Why a speaker must refuse this command, or None when it may act on it.

    ``verify`` checks the signature; a speaker configured with gateway keys always passes one.
    A command under a key id that ``verify`` does not know is ``unknown_key``: a speaker learns
    rotated keys from the gateway's key ring before it checks (see `devices.keyring`).
    """
    if command.city != identity.city or not command.scope.covers(identity):
        return RejectReason.OUT_OF_SCOPE
    if at_ms >= command.expires_at_ms:
        return RejectReason.EXPIRED
    if command.issued_at_ms > at_ms + CLOCK_SKEW_MS:
        return RejectReason.NOT_YET_VALID
    if verify is not None:
        return signature_refusal(command, verify)
    return None


def signature_refusal(command: Command, verify: SignatureCheck) -> RejectReason | None:
    """``unsigned``, ``revoked_key``, ``unknown_key`` or ``bad_signature`` for a command whose
    signature does not hold, else None."""
    if command.sig is None or command.key_id is None:
        return RejectReason.UNSIGNED
    if verify.is_revoked(command.key_id):
        return RejectReason.REVOKED_KEY
    if not verify.knows(command.key_id):
        return RejectReason.UNKNOWN_KEY
    if not verify(command):
        return RejectReason.BAD_SIGNATURE
    return None


class SignatureCheck:
    """Verifies Ed25519 command signatures against the gateway's published keys (by key id).

    Keys given here are trusted as they are (the speaker's configuration); `learn` adds the keys
    a trusted key vouches for and applies revocations. A revoked key id is never trusted again,
    whatever a later ring says, and keys learned through it alone are dropped with it."""

    def __init__(self, public_keys: Mapping[str, bytes], *, revoked: Iterable[str] = ()) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self._revoked = set(revoked)
        self._keys = {
            kid: Ed25519PublicKey.from_public_bytes(raw)
            for kid, raw in public_keys.items()
            if kid not in self._revoked
        }
        # The key that vouched for each learned key (configured keys have none).
        self._vouched_by: dict[str, str] = {}

    def __call__(self, command: Command) -> bool:
        key = self._keys.get(command.key_id or "")
        if key is None or command.sig is None:
            return False
        return _verified(key, command.sig, command.signing_bytes())

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    @property
    def revoked(self) -> frozenset[str]:
        return frozenset(self._revoked)

    @property
    def trusted(self) -> frozenset[str]:
        return frozenset(self._keys)

    def learn(self, ring: KeyRing, city: str) -> dict[str, bytes]:
        """Trust the keys of `ring` that a trusted key vouches for, directly or through a chain
        of endorsements, and drop the keys its revocations name (each signed by another trusted
        key) with every key learned only through them; returns the newly trusted keys (key id
        -> raw public key). Repeated until nothing changes: a revocation may be signed by a key
        learned from this same ring, and a dropped key may be vouched for again by another."""
        if ring.city != city:
            return {}
        before = set(self._keys)
        learned: dict[str, bytes] = {}
        while True:
            learned.update(self._endorsed(ring, city))
            if not self._revoke(ring, city):
                break
        return {kid: raw for kid, raw in learned.items() if kid in self._keys and kid not in before}

    def _endorsed(self, ring: KeyRing, city: str) -> dict[str, bytes]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        learned: dict[str, bytes] = {}
        pending = [
            k for k in ring.keys if k.key_id not in self._keys and k.key_id not in self._revoked
        ]
        progress = True
        while pending and progress:
            progress = False
            for entry in list(pending):
                voucher = self._keys.get(entry.endorsed_by or "")
                if voucher is None or entry.sig is None:
                    continue
                pending.remove(entry)
                if not _verified(voucher, entry.sig, entry.signing_bytes(city)):
                    continue
                raw = entry.raw_public_key()
                self._keys[entry.key_id] = Ed25519PublicKey.from_public_bytes(raw)
                self._vouched_by[entry.key_id] = entry.endorsed_by or ""
                learned[entry.key_id] = raw
                progress = True
        return learned

    def _revoke(self, ring: KeyRing, city: str) -> bool:
        """Apply the revocations of `ring` signed by a trusted key other than the one revoked;
        True when a key was dropped."""
        dropped = False
        for entry in ring.revoked:
            if entry.key_id in self._revoked or entry.revoked_by == entry.key_id:
                continue
            signer = self._keys.get(entry.revoked_by)
            if signer is None or not _verified(signer, entry.sig, entry.signing_bytes(city)):
                continue
            self._revoked.add(entry.key_id)
            gone = {entry.key_id}
            while gone:
                kid = gone.pop()
                if self._keys.pop(kid, None) is not None:
                    dropped = True
                self._vouched_by.pop(kid, None)
                gone |= {k for k, by in self._vouched_by.items() if by == kid}
        return dropped


def _verified(key: Any, sig: str, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(base64.b64decode(sig, validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


MAX_KEYRING_BYTES: Final = 64 * 1024


class KeyEndorsement(_Message):
    """One gateway signing key, vouched for by the key that signed before it (None for the
    first): a speaker that trusts any earlier key learns a rotated one on its own."""

    key_id: Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
    public_key: str = Field(max_length=64)
    endorsed_by: str | None = Field(default=None, max_length=64)
    sig: str | None = Field(default=None, max_length=256)

    def signing_bytes(self, city: str) -> bytes:
        return f"maeul-key/v1\n{city}\n{self.key_id}\n{self.public_key}".encode()

    def raw_public_key(self) -> bytes:
        try:
            raw = base64.b64decode(self.public_key, validate=True)
        except binascii.Error as exc:
            raise WireError("a public key is not valid base64") from exc
        if len(raw) != 32:
            raise WireError("a public key is not a raw 32-byte Ed25519 key")
        return raw


class KeyRevocation(_Message):
    """A gateway signing key revoked: signed by a key still trusted (the gateway's active one),
    never by the revoked key itself. A speaker that has learned it never trusts the key again."""

    key_id: Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
    revoked_by: str = Field(max_length=64)
    sig: str = Field(max_length=256)

    def signing_bytes(self, city: str) -> bytes:
        return f"maeul-revoke/v1\n{city}\n{self.key_id}".encode()


class KeyRing(_Message):
    """Every signing key of a city's gateway still trusted, oldest first, each endorsed by the
    trusted one before it, and the keys it has revoked."""

    v: Literal[1] = PROTOCOL_VERSION
    city: Segment
    keys: tuple[KeyEndorsement, ...] = Field(max_length=256)
    revoked: tuple[KeyRevocation, ...] = Field(default=(), max_length=256)


class Provisioning(_Message):
    """What a speaker needs to join the network, from the gateway's
    ``GET /api/v1/devices/{speaker}/provisioning``: the broker, its session settings, its topics
    and the key ring its commands are signed with."""

    v: Literal[1] = PROTOCOL_VERSION
    identity: SpeakerIdentity
    broker_url: str = Field(max_length=500)
    client_id: str = Field(max_length=100)
    username: str = Field(max_length=100)
    session_expiry_s: int = Field(ge=0)
    keepalive_s: int = Field(ge=5, le=3600)
    heartbeat_s: float = Field(gt=0)
    offline_after_s: float = Field(gt=0)
    subscriptions: tuple[str, ...]
    live_subscriptions: tuple[str, ...]
    ack_topic: str
    presence_topic: str
    audio_url: str = Field(max_length=500)
    keyring_url: str = Field(max_length=500)
    keyring: KeyRing


def provisioning_for(
    identity: SpeakerIdentity,
    *,
    broker_url: str,
    gateway_url: str,
    session_expiry_s: int,
    keepalive_s: int,
    heartbeat_s: float,
    keyring: KeyRing,
) -> Provisioning:
    base = gateway_url.rstrip("/")
    return Provisioning(
        identity=identity,
        broker_url=broker_url,
        client_id=speaker_client_id(identity.speaker),
        username=identity.speaker,
        session_expiry_s=session_expiry_s,
        keepalive_s=keepalive_s,
        heartbeat_s=heartbeat_s,
        offline_after_s=3 * heartbeat_s,
        subscriptions=tuple(identity.subscriptions()),
        live_subscriptions=tuple(
            live_subscriptions(identity.city, identity.district, identity.village)
        ),
        ack_topic=ack_topic(identity.city, identity.speaker),
        presence_topic=presence_topic(identity.city, identity.speaker),
        audio_url=f"{base}/api/v1/audio/{{sha256}}",
        keyring_url=f"{base}/api/v1/keys/ring",
        keyring=keyring,
    )


def endorse_key(
    city: str, key_id: str, public_key: bytes, *, by: tuple[str, bytes] | None
) -> KeyEndorsement:
    """`public_key` under `key_id`, signed by `by` (key id, raw private key) if given."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    entry = KeyEndorsement(key_id=key_id, public_key=base64.b64encode(public_key).decode("ascii"))
    if by is None:
        return entry
    signer = Ed25519PrivateKey.from_private_bytes(by[1])
    sig = base64.b64encode(signer.sign(entry.signing_bytes(city))).decode("ascii")
    return entry.model_copy(update={"endorsed_by": by[0], "sig": sig})


def revoke_key(city: str, key_id: str, *, by: tuple[str, bytes]) -> KeyRevocation:
    """The revocation of `key_id`, signed by `by` (key id, raw private key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    unsigned = KeyRevocation(key_id=key_id, revoked_by=by[0], sig="")
    signer = Ed25519PrivateKey.from_private_bytes(by[1])
    sig = base64.b64encode(signer.sign(unsigned.signing_bytes(city))).decode("ascii")
    return unsigned.model_copy(update={"sig": sig})


def decode_keyring(payload: bytes) -> KeyRing:
    return _load(KeyRing, payload, MAX_KEYRING_BYTES)


def sign_command(command: Command, *, key_id: str, private_key: bytes) -> Command:
    """Return the command with ``key_id`` and an Ed25519 ``sig`` over its signing bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(private_key)
    unsigned = command.model_copy(update={"key_id": key_id, "sig": None})
    signature = key.sign(unsigned.signing_bytes())
    return unsigned.model_copy(update={"sig": base64.b64encode(signature).decode("ascii")})


def describe(payload: Mapping[str, Any]) -> str:
    """A short, log-safe description of a payload (never inline audio or signatures)."""
    keep = ("type", "id", "command_id", "broadcast_id", "speaker", "status", "reason")
    return " ".join(f"{k}={payload[k]}" for k in keep if k in payload)


# --------------------------------------------------------------------------------------------
# Speaker side: names a speaker (simulated or real) shares with the gateway beyond the payloads
# above. Added for `devices/`; nothing above depends on this section.


class FailReason(StrEnum):
    """Why a speaker reports ``failed`` for a command it had accepted (``received``)."""

    EXPIRED = "expired"  # its turn came after expires_at_ms; never started
    CANCELLED = "cancelled"  # a cancel for its broadcast arrived (queued or playing)
    INTERRUPTED = "interrupted"  # the speaker restarted while it was playing; not replayed
    PREEMPTED = "preempted"  # the Stop reason when a higher-priority command takes the horn
    FETCH_FAILED = "fetch_failed"  # the audio behind its URL could not be fetched
    UNDECODABLE = "undecodable"  # the audio bytes matched their hash but did not decode
    PLAYER_ERROR = "player_error"  # the sound output failed
    SUPERSEDED = "superseded"  # a command that supersedes it (a resend) is held or was played


SPEAKER_CLIENT_PREFIX: Final = "spk-"


def speaker_client_id(speaker: str) -> str:
    """A speaker's MQTT client id: stable, so the broker keeps its session across reconnects."""
    return f"{SPEAKER_CLIENT_PREFIX}{_segment(speaker, 'speaker')}"


_COMMAND_ID = re.compile(r"^[0-9a-f]{32}$")


def command_ids_of(payload: bytes) -> tuple[str, str] | None:
    """(id, broadcast_id) of a command that failed validation, when both can still be read.

    Lets a speaker answer a malformed command with a ``rejected`` ack instead of silence.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    command_id, broadcast_id = body.get("id"), body.get("broadcast_id")
    if not (isinstance(command_id, str) and isinstance(broadcast_id, str)):
        return None
    if not (_COMMAND_ID.fullmatch(command_id) and _COMMAND_ID.fullmatch(broadcast_id)):
        return None
    return command_id, broadcast_id


# --------------------------------------------------------------------------------------------
# Live streams: a live broadcast's audio, in real time. Added for live broadcasts; nothing above
# depends on this section except `Command.live`.
#
# A live broadcast starts as an ordinary signed play command whose ``audio`` is the start chime
# and whose ``live`` names the stream. Its frames go, once per group as for commands, to
#
#     maeul/v1/{c}/live/all  |  maeul/v1/{c}/live/district/{d}  |  maeul/v1/{c}/live/village/{v}
#
# which every speaker subscribes to beside its command topics. A frame is binary (big-endian):
#
#     0   1  magic 0x4c ("L")
#     1   1  kind: 1 audio (QoS 0), 2 pause, 3 end (QoS 1; the end's seq is the last audio seq)
#     2   1  flags: audio: bit 0 starts a talk spurt (re-anchor playout); end: an EndReason
#     3   1  reserved, 0
#     4  16  session: the broadcast id
#     20  4  seq: audio frame number, from 0, without gaps at the sender
#     24  8  at_ms: when the gateway received the frame (Unix ms): latency is measured from it
#     32  8  tag: the first 8 bytes of HMAC-SHA256(LiveStream.key, bytes 0..31 + payload)
#     40  -  payload: one 20 ms Opus packet (audio); empty for pause and end
#
# An audio frame is small (about 100 bytes at 24 kbit/s) and stale after a fraction of a second,
# so it travels at QoS 0; a speaker conceals a lost one. The tag keeps a forged frame from being
# played without costing a signature per frame.

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


def live_topic_all(city: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/live/all"


def live_topic_district(city: str, district: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/live/district/{_segment(district, 'district')}"


def live_topic_village(city: str, village: str) -> str:
    return f"{TOPIC_ROOT}/{_segment(city, 'city')}/live/village/{_segment(village, 'village')}"


def live_subscriptions(city: str, district: str, village: str) -> list[str]:
    """Every live topic one speaker listens on."""
    return [
        live_topic_all(city),
        live_topic_district(city, district),
        live_topic_village(city, village),
    ]


def is_live_topic(topic: str) -> bool:
    parts = topic.split("/", 4)
    return len(parts) >= 4 and parts[3] == "live" and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT


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


# --------------------------------------------------------------------------------------------
# Receipts: a speaker's signed proof of play. Added for proof of play; nothing above depends on
# this section except `Ack.receipt_sig`.
#
# Each speaker holds its own Ed25519 key (enrolled with the gateway, which keeps only the public
# half). A ``played`` ack carries ``receipt_sig``: the speaker's signature over these UTF-8 bytes,
# lines joined by "\n", no trailing newline:
#
#     maeul-receipt/v1
#     {command_id}
#     {broadcast_id}
#     {speaker}
#     {audio_sha256}          the encoding it played, lowercase hex
#     {played_ms}             decimal
#     {level_dbfs}            two decimals ("-23.40", "0.00"); empty when the ack has no level
#     {at_ms}                 the ack's at_ms, decimal
#
# A speaker sends ``level_dbfs`` with at most two decimals, so both sides write the same text.

RECEIPT_DOMAIN: Final = "maeul-receipt/v1"


def _level_text(level_dbfs: float | None) -> str:
    if level_dbfs is None:
        return ""
    text = f"{round(level_dbfs, 2):.2f}"
    return "0.00" if text == "-0.00" else text


class Receipt(_Message):
    """What a speaker signs when it reports ``played``: which command, which audio, how long,
    how loud, when. Rebuilt from a ``played`` ack by `receipt_of`."""

    command_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    broadcast_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    speaker: Segment
    audio_sha256: Sha256Hex
    played_ms: int = Field(ge=0)
    level_dbfs: float | None = Field(default=None, ge=-200, le=20)
    at_ms: int = Field(ge=0)
    sig: str | None = Field(default=None, max_length=128)

    def signing_bytes(self) -> bytes:
        return receipt_signing_bytes(
            command_id=self.command_id,
            broadcast_id=self.broadcast_id,
            speaker=self.speaker,
            audio_sha256=self.audio_sha256,
            played_ms=self.played_ms,
            level_dbfs=self.level_dbfs,
            at_ms=self.at_ms,
        )


def receipt_signing_bytes(
    *,
    command_id: str,
    broadcast_id: str,
    speaker: str,
    audio_sha256: str,
    played_ms: int,
    level_dbfs: float | None,
    at_ms: int,
) -> bytes:
    """The canonical bytes a receipt's signature covers (see the section comment)."""
    lines = (
        RECEIPT_DOMAIN,
        command_id,
        broadcast_id,
        speaker,
        audio_sha256,
        str(int(played_ms)),
        _level_text(level_dbfs),
        str(int(at_ms)),
    )
    return "\n".join(lines).encode()


def receipt_of(ack: Ack) -> Receipt | None:
    """The receipt a ``played`` ack states (signed or not); None when it states no proof."""
    if ack.status is not AckStatus.PLAYED or ack.audio_sha256 is None or ack.played_ms is None:
        return None
    return Receipt(
        command_id=ack.command_id,
        broadcast_id=ack.broadcast_id,
        speaker=ack.speaker,
        audio_sha256=ack.audio_sha256,
        played_ms=ack.played_ms,
        level_dbfs=ack.level_dbfs,
        at_ms=ack.at_ms,
        sig=ack.receipt_sig,
    )


def new_receipt_key() -> tuple[bytes, bytes]:
    """A fresh speaker receipt key: (raw 32-byte private key, raw 32-byte public key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return _raw_private(key), _raw_public(key)


def receipt_public_key(private_key: bytes) -> bytes:
    """The raw public half of a raw Ed25519 private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return _raw_public(Ed25519PrivateKey.from_private_bytes(private_key))


def sign_receipt(receipt: Receipt, private_key: bytes) -> Receipt:
    """The receipt with ``sig``: the speaker's Ed25519 signature over its signing bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(receipt.signing_bytes())
    return receipt.model_copy(update={"sig": base64.b64encode(signature).decode("ascii")})


# Enrolling a receipt key proves possession of its private half: the speaker signs the UTF-8
# lines "maeul-receipt-key/v1", its city, its speaker id and the base64 public key (as sent),
# joined by "\n", no trailing newline. A key cannot be enrolled for a speaker by someone who
# only copied its public half, and the signature binds it to one speaker of one city.

RECEIPT_KEY_DOMAIN: Final = "maeul-receipt-key/v1"


def receipt_key_proof_bytes(city: str, speaker: str, public_key: str) -> bytes:
    """The bytes a receipt key's proof of possession signs (see above)."""
    return "\n".join((RECEIPT_KEY_DOMAIN, city, speaker, public_key)).encode()


def receipt_key_enrollment(private_key: bytes, city: str, speaker: str) -> dict[str, str]:
    """What a speaker sends to enroll its receipt key: ``public_key`` and ``proof`` (base64)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = base64.b64encode(receipt_public_key(private_key)).decode("ascii")
    signer = Ed25519PrivateKey.from_private_bytes(private_key)
    proof = signer.sign(receipt_key_proof_bytes(city, speaker, public))
    return {"public_key": public, "proof": base64.b64encode(proof).decode("ascii")}


def verify_receipt_key_proof(city: str, speaker: str, public_key: str, proof: str) -> bool:
    """True when `proof` is the holder of `public_key`'s signature of its enrollment."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    except (binascii.Error, ValueError):
        return False
    return _verified(key, proof, receipt_key_proof_bytes(city, speaker, public_key))


def verify_receipt(receipt: Receipt, public_key: bytes) -> bool:
    """True when ``receipt.sig`` is the holder of `public_key`'s signature over the receipt."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if receipt.sig is None or len(public_key) != 32:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        return False
    return _verified(key, receipt.sig, receipt.signing_bytes())


def _raw_private(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return raw


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw
