"""Commands from the gateway to speakers: the payload, its parts, and the checks a speaker makes.

The prose on each model and field is the contract's documentation: `openapi/build_asyncapi.py`
turns it into the schemas of `openapi/asyncapi.yaml`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import Field, model_validator

from wire.contract.base import (
    CLOCK_SKEW_MS,
    MAX_COMMAND_BYTES,
    PROTOCOL_VERSION,
    CommandId,
    MessageDocs,
    Segment,
    Sha256Hex,
    WireError,
    _dump,
    _load,
    _Message,
)
from wire.contract.enums import Category, Codec, RejectReason
from wire.contract.topics import speaker_subscriptions

if TYPE_CHECKING:
    from wire.contract.signing import SignatureCheck


class Scope(_Message):
    """Whom a command is for; signed with it, so a command cannot be replayed to another village.

    `all` takes no `ids`; every other kind needs at least one.
    """

    kind: Literal["all", "district", "village", "speaker"] = Field(
        description=(
            "`all` (every speaker of the city), or the kind of place that `ids` lists: "
            "`district`, `village` or `speaker`."
        )
    )
    ids: tuple[Segment, ...] = Field(
        default=(),
        description=(
            "District, village or speaker codes; the command is for a speaker in any of them."
        ),
    )

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
    """One encoding of the message. The bytes travel inline (base64) or behind an HTTP URL.

    Exactly one of `data` and `url` is present (and not null).
    """

    codec: Codec = Field(description="How the bytes are encoded.")
    mime_type: str = Field(
        description="Media type of the bytes: `audio/ogg` for Opus, `audio/mpeg` for MP3."
    )
    sha256: Sha256Hex = Field(
        description=(
            "SHA-256 of the encoded bytes, lowercase hex. Covered by the signature, so it "
            "authenticates the bytes whichever way they travel."
        )
    )
    size: int = Field(ge=1, description="Length of the encoded bytes.")
    duration_ms: int = Field(ge=0, description="Playing time of the audio in milliseconds.")
    data: str | None = Field(
        default=None,
        description=(
            "The bytes, in standard base64 with padding, for short clips. Not itself signed: "
            "the speaker checks `size` and `sha256` of the decoded bytes."
        ),
    )
    url: str | None = Field(
        default=None,
        description=(
            "HTTP(S) address to GET the bytes from, exactly as given: the gateway's "
            "`GET /api/v1/audio/{sha256}?expires=E&sig=S`, a link the gateway signs (HMAC-SHA256 "
            "over the sha256 and `E`, the command's expiry in Unix seconds, under a key only "
            "the gateways hold), so no credentials are needed and nobody else can fetch it. "
            "Past the command's expiry it is refused (`403 audio_link_expired`), as is a link "
            "altered in any way (`403 audio_link_invalid`) and the bare address "
            "(`403 audio_link_required`). It serves one byte range per request "
            "(`Range: bytes=START-`, answered `206` with `Content-Range`; `Accept-Ranges: "
            "bytes`; `416` past the end), so a broken download resumes. The command's signature "
            "does not cover the link: the speaker checks `size` and `sha256` of what it fetched."
        ),
    )

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
    """The stream a live command's speakers play after its chime, as `liveAudio` and
    `liveControl` messages.

    The frames travel on the speaker's live topics; ``key`` authenticates them. It is covered by
    the command's signature, so only the gateway that signed the command can have chosen it.
    """

    session: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] = Field(
        description="The stream's id, 32 lowercase hex digits: the broadcast id."
    )
    codec: Literal["opus"] = Field(default="opus", description="The frames' codec; always Opus.")
    frame_ms: Literal[20] = Field(
        default=20, description="Audio per frame in milliseconds; always 20."
    )
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")] = Field(
        description=(
            "HMAC-SHA256 key of the frames' tags, base64url of 32 bytes without padding. "
            "Covered by the command's signature, so only the signing gateway can have chosen it."
        )
    )
    jitter_ms: int = Field(
        default=80,
        ge=20,
        le=1000,
        description="How long a speaker buffers the first frame of a talk spurt before playing.",
    )
    stall_ms: int = Field(
        default=3000,
        ge=200,
        le=60_000,
        description=(
            "Without a frame for this long (not paused), the speaker ends the stream on its "
            "own: `failed`, `interrupted`."
        ),
    )
    idle_ms: int = Field(
        default=60_000,
        ge=1000,
        le=3_600_000,
        description="The same while the talker has paused the stream.",
    )

    def key_bytes(self) -> bytes:
        return base64.urlsafe_b64decode(self.key + "=")


# How many earlier commands one command may supersede (a resend of a resend ...).
MAX_SUPERSEDES: Final = 32


class Command(_Message):
    """A command to speakers. A speaker acts on a given ``id`` at most once.

    Rules beyond the field types: `expires_at_ms` must be greater than `issued_at_ms` (JSON
    Schema cannot compare two fields, so only the prose states it), and a `play` command carries
    at least one `audio` entry.
    """

    v: Literal[1] = Field(
        default=PROTOCOL_VERSION,
        description="Protocol version. Version 1 is the only one; anything else is `malformed`.",
    )
    type: Literal["play", "cancel"] = Field(
        description=(
            "`play` plays `audio`. `cancel` stops and drops every command of `broadcast_id` "
            "on this speaker, queued or playing, and needs no audio."
        )
    )
    id: CommandId = Field(
        description=(
            "Command id, 32 lowercase hex digits. Every copy of a command has the same id "
            "(group fan-out, resends on the speaker topic, catch-up), and a speaker acts on an "
            "id at most once."
        )
    )
    broadcast_id: CommandId = Field(
        description=(
            "The broadcast this command belongs to. A `cancel` names the broadcast it cancels."
        )
    )
    city: Segment = Field(
        description="City code; a speaker of another city rejects the command (`out_of_scope`)."
    )
    scope: Scope = Field(
        description=(
            "Whom the command is for. The speaker checks it against its own district, village "
            "and id, whatever topic delivered the command."
        )
    )
    category: Category = Field(
        description="What kind of broadcast this is; it sets the default priority."
    )
    priority: int = Field(
        ge=0,
        le=1000,
        description=(
            "Higher plays first and interrupts lower. Commands of equal priority play in "
            "arrival order."
        ),
    )
    # "test" and "exercise" are never a real alert: kept apart in reports, never pre-empting a
    # real broadcast, and introduced as a test in their own audio.
    mode: Literal["live", "test", "exercise"] = Field(
        default="live",
        description=(
            "`live` for a real broadcast, or `test` and `exercise` for test and drill "
            "broadcasts, which the gateway sends at the lowest priority and, when audible, "
            "with a spoken test announcement in the audio itself. Covered by the signature."
        ),
    )
    audible: bool = Field(
        default=True,
        description=(
            "`false` (only with `test` or `exercise`): check, journal and ack the command "
            "without a sound, `played` with `played_ms` 0. A `live` command is always audible."
        ),
    )
    issued_at_ms: int = Field(
        ge=0,
        description=(
            "When the gateway published this copy, in Unix milliseconds. Every copy has a new "
            "`issued_at_ms` and `nonce`."
        ),
    )
    expires_at_ms: int = Field(
        ge=0,
        description=(
            "Unix milliseconds from which the command must not start any more. Greater than "
            "`issued_at_ms`."
        ),
    )
    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")] = Field(
        description=(
            "Fresh random lowercase hex for every copy; covered by the signature. A speaker "
            "keeps the nonce of every command it admitted: an authentic copy with the same id "
            "and nonce after the command played is refused as `replayed`."
        )
    )
    title: str | None = Field(
        default=None, max_length=200, description="Short title for displays and logs."
    )
    text: str | None = Field(
        default=None, max_length=5000, description="The message as text, for displays and logs."
    )
    audio: tuple[AudioRef, ...] = Field(
        default=(),
        description=(
            "Encodings of the message in the gateway's order of preference. The speaker plays "
            "the first one whose codec it supports. A `play` command has at least one."
        ),
    )
    live: LiveStream | None = Field(
        default=None,
        description=(
            "A live broadcast: `audio` is its start chime, then the speaker plays this stream "
            "from the live topics. Absent for every other command."
        ),
    )
    play_at_ms: int | None = Field(
        default=None,
        ge=0,
        description=(
            "When to start (the audio, or a live command's chime), in Unix milliseconds on the "
            "gateway's clock: the same for every speaker of a broadcast, so neighbouring horns "
            "start together. A speaker converts it through its clock offset (see "
            "`Presence.clock_offset_ms`) and waits until then; one that gets the command later "
            "(queued, offline) starts at once. Absent: start at once, as older gateways do."
        ),
    )
    # A speaker plays the message once: it drops any superseded command still queued or
    # arriving later (``failed``/``superseded``), and answers this command ``played`` with
    # ``already_played_as`` if it already played one of them.
    supersedes: tuple[CommandId, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SUPERSEDES,
        description=(
            "A resend: the ids of earlier commands carrying the same message that this one "
            "stands in for (the speaker missed them, as far as the gateway knows). Signed. "
            "Absent when it supersedes nothing (never an empty list). See the `command` "
            "message, 'One play per message'."
        ),
    )
    key_id: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Id of the gateway key that signed the command. A speaker that has not met it "
            "holds the command while it fetches the gateway's key ring (`GET /api/v1/keys/ring`), "
            "where each key is endorsed by the key before it, and trusts only a key that a "
            "trusted key vouches for (see `KeyRing`); a key still not trusted after a fetch "
            "made since the command arrived is `unknown_key`, and a key the ring revoked is "
            "`revoked_key` (see *Key rotation*)."
        ),
    )
    sig: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "Ed25519 signature (64 bytes, standard base64 with padding) of the command's "
            "signing bytes; see the `command` message."
        ),
    )

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


class SpeakerIdentity(_Message):
    """Where a speaker sits; used to subscribe and to check a command's scope."""

    city: Segment = Field(description="City code.")
    district: Segment = Field(description="District code of the speaker's place.")
    village: Segment = Field(description="Village code of the speaker's place.")
    speaker: Segment = Field(
        description="The speaker's id: its MQTT user name and the `{speaker}` of its topics."
    )

    def subscriptions(self) -> list[str]:
        return speaker_subscriptions(self.city, self.district, self.village, self.speaker)


def encode_command(command: Command) -> bytes:
    return _dump(command)


def decode_command(payload: bytes) -> Command:
    return _load(Command, payload, MAX_COMMAND_BYTES)


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


# `$example_key_id`, `$example_public_key` and `$example_signing_bytes` are filled in by the
# document generator from its signed example command.
COMMAND_MESSAGE: Final = MessageDocs(
    "Command",
    "Play a message, or cancel a broadcast.",
    """\
A command to speakers: play a message, or cancel a broadcast. A speaker acts on a given `id` at
most once and acknowledges it on its own ack topic.

## Signature

`sig` is an Ed25519 signature (RFC 8032, pure Ed25519) over the command's signing bytes, made
with the gateway key named by `key_id`. The signing bytes are the command as canonical JSON
(`Command.signing_bytes()` in the contract):

1. every field of the command except `sig`, with the default of each field the payload leaves
   out (`v` 1, `mode` `"live"`, `audible` `true`, `scope.ids` `[]`, `audio` `[]`, `null` for
   the other optional fields: the schema's `default`s), except `live`, left out unless the
   command starts a live stream, and `supersedes`, left out unless the command is a resend;
2. in each `audio` entry, `data` and `url` removed: the bytes are covered through `sha256`,
   whichever way they travel;
3. serialized with keys sorted at every level, no whitespace (separators `,` and `:`),
   non-ASCII characters as raw UTF-8 (not `\\u` escapes), control characters, `"` and `\\`
   escaped as JSON requires, integers in plain decimal.

The speaker rebuilds these bytes from the payload it received and verifies `sig` (standard
base64) with the raw 32-byte public key it was provisioned with for `key_id`.

Example: the `play-inline` example below is signed with the example key `$example_key_id`,
whose public key (raw, base64) is `$example_public_key`. Its signing bytes are:

```
$example_signing_bytes
```

## Handling

Commands play one at a time, highest `priority` first, then in arrival order; a higher
priority interrupts a lower one, which is acknowledged `preempted` and plays again from the start
after it (unless it expires first: `failed`/`expired`). A `cancel` stops and drops every command
of its `broadcast_id` on the speaker (`failed`/`cancelled`) and is itself acknowledged
`received` then `played`. A command whose broadcast was already cancelled fails at once.

## One play per message: cancels after the gateway gives up, and resends

The gateway asks a speaker again (the same command, on the speaker's own topic) while no ack
comes, a few times with back-off. When it gives up (the delivery ends `expired` with reason
`no_ack`), it also publishes a signed `cancel` for that broadcast on the speaker's own topic
(`scope` `speaker`). A speaker that was only frozen or cut off, and receives its backlog later,
therefore finds the cancel behind the command: whichever of the two it handles first, the
command does not play (`failed`/`cancelled`), as long as the command has not expired.

An officer may then resend the message to the speakers that missed it: a new command (new `id`
and `broadcast_id`) whose `supersedes` lists the ids it stands in for. A speaker holding both
plays the message once:

- a superseded command still queued when the resend arrives, or arriving after it, is not
  played: `failed`/`superseded`;
- if the speaker already played a superseded command, it does not play the resend: it acks it
  `received`, then `played` with `already_played_as` (that command's id) and that playback's
  proof; if a superseded command is playing when the resend arrives, the resend waits and is
  settled the same way when the playback ends (or plays, if the playback was cut short).

A speaker remembers a cancel and what a resend supersedes until they expire, across restarts
(the reference speaker notes both in its journal). Should a speaker still play a command after
the gateway gave up on it, its `played` ack is recorded as `played_late`, never as an on-time
`played`.
""",
)
