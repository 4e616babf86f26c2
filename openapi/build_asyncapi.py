#!/usr/bin/env python3
"""Generate ``openapi/asyncapi.yaml``, the AsyncAPI 3.0 description of the MQTT interface.

Everything that can come from ``wire/contract.py`` does: the payload schemas are the JSON Schemas
of the contract's pydantic models, and topic addresses, QoS, size limits, the shared-subscription
group, enum values and the examples (real, signed contract objects) are read from the contract.
Only the prose lives here. After changing the contract, regenerate and commit the result::

    python openapi/build_asyncapi.py            # rewrite openapi/asyncapi.yaml
    python openapi/build_asyncapi.py --check    # exit 1 when openapi/asyncapi.yaml is stale

``tests/test_asyncapi.py`` fails while the committed document differs from what this produces.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, TypeAdapter

from gateway.deliveries.service import ACK_GRACE
from gateway.settings import Settings
from wire import contract
from wire.contract import AckStatus, Category, Codec, FailReason, RejectReason

TARGET: Final = Path(__file__).resolve().with_name("asyncapi.yaml")
MQTT_BINDING: Final = "0.2.0"
SCHEMA_REF: Final = "#/components/schemas/"
HEADER: Final = (
    "# Generated from wire/contract.py by openapi/build_asyncapi.py: do not edit by hand.\n"
    "# Regenerate with `python openapi/build_asyncapi.py` after changing the contract.\n"
)

# The models that travel on the wire, in the order the document lists them.
PAYLOAD_MODELS: Final[tuple[type[BaseModel], ...]] = (
    contract.Command,
    contract.Ack,
    contract.Presence,
)
# Enums that no payload field references but that give meaning to Ack.reason.
REASON_ENUMS: Final[tuple[type[StrEnum], ...]] = (RejectReason, FailReason)
# Documents a speaker fetches over HTTP, listed with the payloads for a vendor's convenience.
HTTP_MODELS: Final[tuple[type[BaseModel], ...]] = (contract.KeyRing, contract.Provisioning)

# --------------------------------------------------------------------------------------------
# Prose for the generated schemas. A field or enum value described neither here nor by its
# pydantic `description` still appears in the document (its schema comes from the model), with
# a sentence saying it is not described yet, and the generator names it on stderr. A description
# of a field or value that no longer exists stops the generator.

SEGMENT_RULE: Final = "`[A-Za-z0-9_-]{1,64}`"

MODEL_NOTES: Final[Mapping[str, str]] = {
    "Command": (
        "Rules beyond the field types: `expires_at_ms` must be greater than `issued_at_ms` "
        "(JSON Schema cannot compare two fields, so only the prose states it), and a `play` "
        "command carries at least one `audio` entry."
    ),
    "Scope": "`all` takes no `ids`; every other kind needs at least one.",
    "AudioRef": "Exactly one of `data` and `url` is present (and not null).",
}

FIELD_DOCS: Final[Mapping[str, Mapping[str, str]]] = {
    "Command": {
        "v": "Protocol version. Version 1 is the only one; anything else is `malformed`.",
        "type": (
            "`play` plays `audio`. `cancel` stops and drops every command of `broadcast_id` "
            "on this speaker, queued or playing, and needs no audio."
        ),
        "id": (
            "Command id, 32 lowercase hex digits. Every copy of a command has the same id "
            "(group fan-out, resends on the speaker topic, catch-up), and a speaker acts on an "
            "id at most once."
        ),
        "broadcast_id": (
            "The broadcast this command belongs to. A `cancel` names the broadcast it cancels."
        ),
        "city": "City code; a speaker of another city rejects the command (`out_of_scope`).",
        "scope": (
            "Whom the command is for. The speaker checks it against its own district, village "
            "and id, whatever topic delivered the command."
        ),
        "category": "What kind of broadcast this is; it sets the default priority.",
        "priority": (
            "Higher plays first and interrupts lower. Commands of equal priority play in "
            "arrival order."
        ),
        "mode": (
            "`live` for a real broadcast, or `test` and `exercise` for test and drill "
            "broadcasts, which the gateway sends at the lowest priority and, when audible, "
            "with a spoken test announcement in the audio itself. Covered by the signature."
        ),
        "audible": (
            "`false` (only with `test` or `exercise`): check, journal and ack the command "
            "without a sound, `played` with `played_ms` 0. A `live` command is always audible."
        ),
        "issued_at_ms": (
            "When the gateway published this copy, in Unix milliseconds. Every copy has a new "
            "`issued_at_ms` and `nonce`."
        ),
        "expires_at_ms": (
            "Unix milliseconds from which the command must not start any more. Greater than "
            "`issued_at_ms`."
        ),
        "nonce": (
            "Fresh random lowercase hex for every copy; covered by the signature. A speaker "
            "keeps the nonce of every command it admitted: an authentic copy with the same id "
            "and nonce after the command played is refused as `replayed`."
        ),
        "title": "Short title for displays and logs.",
        "text": "The message as text, for displays and logs.",
        "audio": (
            "Encodings of the message in the gateway's order of preference. The speaker plays "
            "the first one whose codec it supports. A `play` command has at least one."
        ),
        "key_id": (
            "Id of the gateway key that signed the command. A speaker that has not met it "
            "holds the command while it fetches the gateway's key ring (`GET /api/v1/keys/ring`), "
            "where each key is endorsed by the key before it, and trusts only a key that a "
            "trusted key vouches for (see `KeyRing`); a key still not trusted after a fetch "
            "made since the command arrived is `unknown_key`, and a key the ring revoked is "
            "`revoked_key` (see *Key rotation*)."
        ),
        "live": (
            "A live broadcast: `audio` is its start chime, then the speaker plays this stream "
            "from the live topics. Absent for every other command."
        ),
        "supersedes": (
            "A resend: the ids of earlier commands carrying the same message that this one "
            "stands in for (the speaker missed them, as far as the gateway knows). Signed. "
            "Absent when it supersedes nothing (never an empty list). See the `command` "
            "message, 'One play per message'."
        ),
        "sig": (
            "Ed25519 signature (64 bytes, standard base64 with padding) of the command's "
            "signing bytes; see the `command` message."
        ),
    },
    "LiveStream": {
        "session": "The stream's id, 32 lowercase hex digits: the broadcast id.",
        "codec": "The frames' codec; always Opus.",
        "frame_ms": "Audio per frame in milliseconds; always 20.",
        "key": (
            "HMAC-SHA256 key of the frames' tags, base64url of 32 bytes without padding. "
            "Covered by the command's signature, so only the signing gateway can have chosen it."
        ),
        "jitter_ms": "How long a speaker buffers the first frame of a talk spurt before playing.",
        "stall_ms": (
            "Without a frame for this long (not paused), the speaker ends the stream on its "
            "own: `failed`, `interrupted`."
        ),
        "idle_ms": "The same while the talker has paused the stream.",
    },
    "Scope": {
        "kind": (
            "`all` (every speaker of the city), or the kind of place that `ids` lists: "
            "`district`, `village` or `speaker`."
        ),
        "ids": "District, village or speaker codes; the command is for a speaker in any of them.",
    },
    "AudioRef": {
        "codec": "How the bytes are encoded.",
        "mime_type": "Media type of the bytes: `audio/ogg` for Opus, `audio/mpeg` for MP3.",
        "sha256": (
            "SHA-256 of the encoded bytes, lowercase hex. Covered by the signature, so it "
            "authenticates the bytes whichever way they travel."
        ),
        "size": "Length of the encoded bytes.",
        "duration_ms": "Playing time of the audio in milliseconds.",
        "data": (
            "The bytes, in standard base64 with padding, for short clips. Not itself signed: "
            "the speaker checks `size` and `sha256` of the decoded bytes."
        ),
        "url": (
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
    },
    "Ack": {
        "v": "Protocol version; always 1.",
        "command_id": "The `id` of the command this acknowledges.",
        "broadcast_id": "The command's `broadcast_id`.",
        "speaker": (
            "The speaker's own id. It must equal the `{speaker}` of the topic; the gateway "
            "drops an ack that claims another speaker."
        ),
        "status": "How far the speaker got with the command.",
        "at_ms": "When the speaker reached this status, in Unix milliseconds (speaker clock).",
        "reason": (
            "Why, for `failed` (a `FailReason`) and `rejected` (a `RejectReason`). Other short "
            "texts are allowed for causes those lists do not name."
        ),
        "audio_sha256": (
            "With `played`: the `sha256` of the encoding that played; it must be one the "
            "command carried, or the delivery fails with reason `bad_proof`."
        ),
        "played_ms": (
            "With `played`: how long it played, in milliseconds: that encoding's `duration_ms` "
            "within max(1000 ms, 5 %) (0 for a test logged without a sound; a live stream's "
            "length as heard, with the chime's `audio_sha256`), or the delivery fails "
            "`bad_proof`."
        ),
        "level_dbfs": (
            "With `played`: the RMS level of all the 16-bit PCM the speaker wrote to its "
            "output, in dBFS (full scale 32768 = 0 dBFS: a full-scale square wave), at most "
            "two decimals. Required above the -70 dBFS silence floor for a command with "
            "`audible` true (else `bad_proof`, see Proof of play); omitted for one logged "
            "without a sound."
        ),
        "receipt_sig": (
            "With `played`, from a speaker with an enrolled receipt key: base64 of its Ed25519 "
            "signature over the receipt's signing bytes (see Proof of play). Missing or not "
            "verifying: the delivery fails `bad_proof`."
        ),
        "frames_received": "For a live stream, with its final ack: audio frames that arrived.",
        "frames_lost": (
            "For a live stream, with its final ack: audio frames missing or too late to play "
            "(concealed)."
        ),
        "latency_ms": (
            "For a live stream, with its final ack: the median time from the gateway's receipt "
            "of a frame (`at_ms` in the frame) to its playout, in milliseconds."
        ),
        "already_played_as": (
            "With `played` for a command that `supersedes` others: the speaker did not play it "
            "because it had already played this one of them (its id); `audio_sha256`, "
            "`played_ms` and `level_dbfs` are that playback's, signed in a new receipt over this "
            "command's own `command_id` and `broadcast_id` and this ack's `at_ms` (see Proof of "
            "play). Repeated in every later ack of the command."
        ),
    },
    "KeyRing": {
        "v": "Version of the key ring document; always 1.",
        "city": "The city whose gateway signs with these keys.",
        "keys": (
            "Every signing key of the city still trusted, oldest first; each after the first is "
            "endorsed by the trusted key before it."
        ),
        "revoked": (
            "The keys the gateway has revoked, each revocation signed by its active key; a "
            "speaker never trusts them again (see *Key revocation*)."
        ),
    },
    "KeyRevocation": {
        "key_id": "The revoked key's id.",
        "revoked_by": "The id of the key that signed this revocation (never `key_id` itself).",
        "sig": (
            "Ed25519 signature by `revoked_by` (standard base64) of the UTF-8 bytes "
            "`maeul-revoke/v1` LF city LF `key_id` (see *Key revocation*)."
        ),
    },
    "KeyEndorsement": {
        "key_id": "The key's id, as commands name it in `key_id`.",
        "public_key": "The raw 32-byte Ed25519 public key, standard base64 with padding.",
        "endorsed_by": "The id of the key that signed this entry; absent for the first key.",
        "sig": (
            "Ed25519 signature by `endorsed_by` (standard base64) of the UTF-8 bytes "
            "`maeul-key/v1` LF city LF `key_id` LF `public_key` (see *Key rotation*)."
        ),
    },
    "SpeakerIdentity": {
        "city": "City code.",
        "district": "District code of the speaker's place.",
        "village": "Village code of the speaker's place.",
        "speaker": "The speaker's id: its MQTT user name and the `{speaker}` of its topics.",
    },
    "Provisioning": {
        "v": "Version of the provisioning document; always 1.",
        "identity": "Where the speaker sits; the segments of its topics and its scope checks.",
        "broker_url": (
            "The broker to connect to: `mqtt://host:port` or `mqtts://host:port` (TLS). The "
            "gateway's `speaker_broker_url` setting."
        ),
        "client_id": "The MQTT client id to connect with (stable: the session outlives it).",
        "username": "The MQTT user name; the password is the broker password issued to it.",
        "session_expiry_s": (
            "The MQTT 5 Session Expiry Interval to connect with (Clean Start 0): how long the "
            "broker keeps the speaker's subscriptions and queued commands while it is away."
        ),
        "keepalive_s": "The MQTT keep-alive to connect with, in seconds.",
        "heartbeat_s": "Publish a `heartbeat` presence at least this often, in seconds.",
        "offline_after_s": (
            "The gateway counts the speaker offline after hearing nothing for this long."
        ),
        "subscriptions": "The command topics to subscribe to (QoS 1).",
        "live_subscriptions": "The live topics to subscribe to (QoS 1; audio frames come at 0).",
        "ack_topic": "Where to publish acknowledgements.",
        "presence_topic": "Where to publish birth, heartbeats and the Will.",
        "audio_url": (
            "Template of the audio URLs (`{sha256}` replaced); commands carry full URLs, signed "
            "and expiring with the command (see `AudioRef.url`): fetch those as given."
        ),
        "keyring_url": "Where to fetch the key ring after a key rotation.",
        "keyring": "The key ring now, to start from.",
    },
    "Presence": {
        "v": "Protocol version; always 1.",
        "speaker": "The speaker's own id; must equal the `{speaker}` of the topic.",
        "status": (
            "`online` is the birth message after every connect, `heartbeat` the periodic "
            "sign of life, `offline` the will (or a clean shutdown)."
        ),
        "at_ms": "When the speaker sent this, in Unix milliseconds (speaker clock).",
        "codecs": (
            "Codecs the speaker plays, best first. Sent with the birth message; empty leaves "
            "what the gateway knows unchanged."
        ),
        "firmware": "Firmware version, for the fleet overview.",
        "boot_id": "Random id chosen at every boot: a new value means the speaker restarted.",
        "session_present": (
            "Birth only: the `session_present` flag of the broker's CONNACK (true: the broker "
            "kept the speaker's session and is delivering the commands queued in it). The "
            "gateway then waits `catchup_grace_s` before sending again, on the speaker topic, "
            "what the speaker has still not acknowledged `received`; absent or false, it "
            "catches up at once."
        ),
    },
}

ENUM_DOCS: Final[Mapping[type[StrEnum], tuple[str, Mapping[str, str]]]] = {
    Category: (
        "What kind of broadcast a command is. Each has a default priority (cities can "
        "reorder them):",
        {
            "village_notice": "notices of the village office",
            "administrative": "notices of the city or district administration",
            "crime_prevention": "crime-prevention messages",
            "disaster": "disaster warnings",
        },
    ),
    Codec: (
        "Audio encodings on the wire:",
        {"opus": "Opus in Ogg (`audio/ogg`)", "mp3": "MP3 (`audio/mpeg`)"},
    ),
    AckStatus: (
        "How far a speaker got with one command id. Statuses only move forward: "
        "`received` → `playing` → `played`, or end in `failed` or `rejected`; the one loop is "
        "`playing` → `preempted` → `playing` (from the start).",
        {
            "received": (
                "the command passed every check and is queued; inline audio has been checked "
                "against its `sha256` (audio behind a URL is fetched and checked after this ack)"
            ),
            "playing": "the audio started (recorded before it starts: never played twice)",
            "preempted": (
                "a higher-priority command interrupted it; it waits in the queue and plays again "
                "from the start (`playing`, `played`), or ends `failed`/`expired` if its "
                "`expires_at_ms` passes first"
            ),
            "played": (
                "the audio played to the end; carries `audio_sha256`, `played_ms`, `level_dbfs` "
                "and, from a speaker with an enrolled receipt key, `receipt_sig`"
            ),
            "failed": "an accepted command did not play to the end; `reason` is a `FailReason`",
            "rejected": "the speaker refused the command; `reason` is a `RejectReason`",
        },
    ),
    RejectReason: (
        "Why a speaker refuses a command (`rejected` acks). Only `Ack.reason` carries them, as "
        "a plain string.",
        {
            "malformed": (
                "the payload is not a valid command, but its `id` and `broadcast_id` could "
                "still be read (otherwise the speaker stays silent)"
            ),
            "expired": "it arrived at or after `expires_at_ms`",
            "not_yet_valid": (
                f"`issued_at_ms` is more than {contract.CLOCK_SKEW_MS} ms ahead of the speaker's "
                "clock; not remembered, so a later copy plays once the clock is right"
            ),
            "out_of_scope": "`city` or `scope` does not cover this speaker",
            "bad_signature": "the signature does not verify with the key named by `key_id`",
            "unsigned": "the speaker has gateway keys but the command has no `sig` or `key_id`",
            "unknown_key": (
                "`key_id` names a key the speaker does not trust and could not learn from the "
                "gateway's key ring, fetched after the command arrived (not listed there, or not "
                "vouched for by a trusted key). Not final: the gateway keeps the delivery open "
                "and asks again, signed by its current key"
            ),
            "revoked_key": (
                "`key_id` names a key the gateway's key ring revoked (see *Key revocation*): "
                "refused at once, without asking the ring again. Not final either: the gateway "
                "asks again, signed by its current key"
            ),
            "replayed": (
                "an authentic copy of a command that already played, with the same `nonce` as "
                "the copy that played: a captured command sent again (the gateway's own "
                "retries carry a fresh nonce and are answered with the last ack instead)"
            ),
            "unsupported_codec": "none of the `audio` entries is in a codec the speaker plays",
            "integrity": (
                "the audio bytes do not match `size` and `sha256`. Inline audio is checked "
                "before `received`; audio behind a URL is fetched after `received`, so its "
                "mismatch is acked `rejected`/`integrity` after `received` (never `failed`). "
                "Either way the id stays open: a later copy may still play"
            ),
        },
    ),
    FailReason: (
        "Why an accepted command did not play to the end (`failed` acks). Only `Ack.reason` "
        "carries them, as a plain string.",
        {
            "expired": "its turn came after `expires_at_ms`; it never started",
            "cancelled": (
                "a `cancel` for its broadcast arrived while it was queued or playing, or before "
                "it (the gateway also sends one to a speaker it gave up waiting for)"
            ),
            "superseded": (
                "a command that `supersedes` it (a resend of the same message) is held or was "
                "played: the message plays once"
            ),
            "interrupted": "the speaker restarted while it was playing; it is not played again",
            "preempted": (
                "a higher-priority command took over the loudspeaker; the speaker's reason for "
                "stopping the sound, acknowledged as the status `preempted`, not as `failed`"
            ),
            "fetch_failed": (
                "the audio behind its URL could not be fetched; a later copy may still play"
            ),
            "undecodable": "the audio matched its hash but did not decode",
            "player_error": "the sound output failed",
        },
    ),
}

# --------------------------------------------------------------------------------------------
# Payload schemas


UNDESCRIBED: Final = "Not described in this document yet; its schema gives its type and limits."


def _undescribed(what: str) -> str:
    sys.stderr.write(f"build_asyncapi: {what} has no description (add one to FIELD_DOCS)\n")
    return UNDESCRIBED


def _enum_description(enum: type[StrEnum]) -> str:
    intro, meanings = ENUM_DOCS[enum]
    values = {member.value for member in enum}
    if set(meanings) - values:
        raise SystemExit(f"{enum.__name__}: ENUM_DOCS describes {sorted(set(meanings) - values)}")
    lines = [intro, ""]
    for member in enum:
        extra = ""
        if enum is Category:
            extra = f" (default priority {contract.DEFAULT_PRIORITY[Category(member)]})"
        meaning = meanings.get(member.value) or _undescribed(f"{enum.__name__}.{member.value}")
        lines.append(f"- `{member.value}`: {meaning}{extra}")
    return "\n".join(lines)


def _describe_model(name: str, schema: dict[str, Any]) -> None:
    docs = FIELD_DOCS.get(name, {})
    properties: dict[str, Any] = schema["properties"]
    if set(docs) - set(properties):
        raise SystemExit(f"{name}: FIELD_DOCS describes {sorted(set(docs) - set(properties))}")
    for field, sub in properties.items():
        sub.pop("title", None)  # pydantic's "Broadcast Id" adds nothing to the field name
        # A new field keeps the description its model gives it, if any.
        sub["description"] = (
            docs.get(field) or sub.get("description") or _undescribed(f"{name}.{field}")
        )
    note = MODEL_NOTES.get(name)
    if note:
        schema["description"] = f"{schema.get('description', '').strip()}\n\n{note}".strip()


def _cross_field_rules(schemas: dict[str, Any]) -> None:
    """The models' `model_validator`s that JSON Schema can express, spelled out by hand.

    `tests/test_asyncapi.py` checks these against the models with valid and invalid payloads.
    """
    schemas["Scope"].update(
        {
            "if": {"properties": {"kind": {"const": "all"}}},
            "then": {"properties": {"ids": {"maxItems": 0}}},
            "else": {"required": ["ids"], "properties": {"ids": {"minItems": 1}}},
        }
    )
    schemas["AudioRef"]["oneOf"] = [
        {"required": ["data"], "properties": {"data": {"type": "string"}}},
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
    ]
    schemas["Command"].update(
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "play"}}},
            "then": {"required": ["audio"], "properties": {"audio": {"minItems": 1}}},
        }
    )


def payload_schemas() -> dict[str, Any]:
    """components/schemas: the payload models, the models and enums they use, the reasons."""
    schemas: dict[str, Any] = {}
    for model in (*PAYLOAD_MODELS, *HTTP_MODELS):
        generated = model.model_json_schema(ref_template=SCHEMA_REF + "{model}")
        defs: dict[str, Any] = generated.pop("$defs", {})
        for name, schema in [(model.__name__, generated), *defs.items()]:
            if name in schemas and schemas[name] != schema:
                raise SystemExit(f"two different schemas are called {name}")
            schemas.setdefault(name, schema)
    for enum in REASON_ENUMS:
        schemas[enum.__name__] = TypeAdapter(enum).json_schema()
    for name, schema in schemas.items():
        if "properties" in schema:
            _describe_model(name, schema)
        elif "enum" in schema:
            described = next((e for e in ENUM_DOCS if e.__name__ == name), None)
            if described is None:
                schema.setdefault("description", _undescribed(f"the enum {name}"))
            else:
                schema["description"] = _enum_description(described)
    _cross_field_rules(schemas)
    schemas["LiveFrame"] = LIVE_FRAME_SCHEMA
    return schemas


# --------------------------------------------------------------------------------------------
# Examples: real contract objects, signed with a published example key (never use it)

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


ACK_EXAMPLES: Final[Mapping[str, str]] = {
    "received": "The village notice passed every check and is queued.",
    "playing": "The village notice started playing.",
    "played": "The village notice played to the end, with proof of play.",
    "failed": "The disaster warning was cancelled while queued (a `FailReason`).",
    "played-as": (
        "A resend of the village notice to a speaker that had played the notice after all: "
        "not played again, answered from that playback."
    ),
    "rejected": "A command whose signature does not verify (a `RejectReason`).",
}


def _wire(payload: bytes) -> Any:
    return json.loads(payload)


# --------------------------------------------------------------------------------------------
# The document


def address(topic: Callable[..., str]) -> str:
    """A contract topic function's topic with `{name}` in place of each argument."""
    names = list(inspect.signature(topic).parameters)
    rendered = topic(*(f"__{name}__" for name in names))
    for name in names:
        rendered = rendered.replace(f"__{name}__", f"{{{name}}}")
    return rendered


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _qos(
    qos: int, *, retain: bool | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    binding: dict[str, Any] = {"qos": int(qos)}
    if retain is not None:
        binding["retain"] = retain
    binding.update(extra or {})
    binding["bindingVersion"] = MQTT_BINDING
    return {"mqtt": binding}


def _size(size: int) -> str:
    return f"{size // 1024 // 1024} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


def _info_description() -> str:
    heartbeat_s = Settings.model_fields["heartbeat_s"].default
    catchup_grace_s = Settings.model_fields["catchup_grace_s"].default
    inline_max = Settings.model_fields["inline_audio_max_bytes"].default
    client_id = f"{contract.SPEAKER_CLIENT_PREFIX}{{speaker}}"
    skew_ms = contract.CLOCK_SKEW_MS
    topic_rows = [
        ("command_topic_all", "gateway → speakers", contract.COMMAND_QOS, "no"),
        ("command_topic_district", "gateway → speakers", contract.COMMAND_QOS, "no"),
        ("command_topic_village", "gateway → speakers", contract.COMMAND_QOS, "no"),
        ("command_topic_speaker", "gateway → one speaker", contract.COMMAND_QOS, "no"),
        ("ack_topic", "speaker → gateway", contract.ACK_QOS, "no"),
        ("presence_topic", "speaker → gateway", contract.PRESENCE_QOS, "birth and will"),
        ("live_topic_all", "gateway → speakers", contract.LIVE_FRAME_QOS, "no"),
        ("live_topic_district", "gateway → speakers", contract.LIVE_FRAME_QOS, "no"),
        ("live_topic_village", "gateway → speakers", contract.LIVE_FRAME_QOS, "no"),
    ]
    table = "\n".join(
        f"| `{address(getattr(contract, fn))}` | {direction} | {int(qos)} | {retain} |"
        for fn, direction, qos, retain in topic_rows
    )
    return f"""\
The MQTT 5 interface between the Maeul gateway and village loudspeakers: the gateway publishes
broadcast commands, the broker fans them out, and every speaker acknowledges each command and
reports its presence on topics of its own.

This document is generated from `wire/contract.py`, the one module that defines topics,
payloads, QoS and signatures, by `openapi/build_asyncapi.py`. The payload schemas are the JSON
Schemas of the contract's pydantic models. It describes both sides: operations tagged `gateway`
are performed by gateway replicas, operations tagged `speaker` by every speaker.

## Topics

Topic segments (`{{city}}`, `{{district}}`, `{{village}}`, `{{speaker}}`) match {SEGMENT_RULE}.

| topic | direction | QoS | retained |
|---|---|---|---|
{table}

A speaker subscribes to the four command topics of its own place (city, district, village,
speaker id). The broker's ACL lets it read no other speaker's topic and publish only its own ack
and presence topics.
Group topics let the broker do the fan-out to thousands of speakers; `cmd/speaker/{{speaker}}`
carries resends and catch-up for one speaker.

## Sessions

- MQTT 5 only (the interface relies on shared subscriptions, message expiry and the
  Content Type property).
- A speaker connects with the client id `{client_id}`, its speaker id as
  username, Clean Start 0 and a non-zero Session Expiry Interval, so the broker keeps its
  subscriptions and queues QoS 1 commands while it is briefly offline. It registers the
  `offline` presence message as its Will (QoS {int(contract.PRESENCE_QOS)}, retained).
- A subscription the broker's ACL denies is still granted at SUBACK (Mosquitto answers with
  the requested QoS, not reason code 0x87) and then delivers nothing, silently. A speaker
  cannot tell a denied topic from a quiet one: it subscribes to exactly the topics its
  provisioning lists.
- Gateway replicas read acks and presence through the MQTT 5 shared subscriptions
  `{contract.ack_subscription()}` and `{contract.presence_subscription()}`: the broker hands each
  message to one replica of the group `{contract.SHARE_GROUP}`, so any number of replicas split
  the load.

## Delivery and acknowledgement

- **A broker PUBACK is not an ack.** It only says the broker has the command. A command counts
  as delivered when the speaker publishes its own ack on `{address(contract.ack_topic)}`.
- **At most once per command id.** The same command reaches a speaker through its group topic,
  resends on its speaker topic and catch-up after it comes back online, always with the same
  `id`. A speaker records an id before acknowledging it and acts on it at most once; later
  copies are answered as *Copies of a command id* below says.
- **Refusals of a copy.** `unsigned`, `unknown_key`, `revoked_key`, `bad_signature`,
  `replayed` and `malformed` refuse one copy, not the command. The gateway records each as a
  security event; once the speaker has acknowledged `received` (or `preempted`) for the id,
  such a refusal does not change the delivery.
- **Ack order.** For one command id: `received` → `playing` → `played`; or `failed` (with a
  `FailReason`) once accepted; or `rejected` (with a `RejectReason`) instead of being accepted.
  A command interrupted by a higher priority goes `playing` → `preempted` → `playing` (again
  from the start) → `played`, or `preempted` → `failed` (`expired`, `cancelled`).
  QoS 1 can deliver acks twice or out of order; the gateway ignores moves backwards.
- **Commands have a deadline.** The gateway sets the MQTT 5 Message Expiry Interval of every
  command to the seconds left until `expires_at_ms`, so the broker drops a command that went
  stale in an offline speaker's queue. The speaker checks `expires_at_ms` itself too.

## Copies of a command id

A later copy of an id the speaker has recorded never makes it act again; it is answered by the
first of these rules that applies, and nothing else happens:

1. A copy that fails its own signature check (a speaker with gateway keys) is refused:
   `rejected` with `unsigned`, `unknown_key`, `revoked_key` or `bad_signature`; a payload that
   is not a valid command is `rejected`/`malformed`. This holds whatever the id's state, also
   while the genuine command waits or plays: a forged copy never draws the genuine command's
   ack.
2. An authentic copy of a command that ended `played`, with the same `nonce` as the copy that
   played, is a captured command sent again: `rejected`/`replayed`.
3. Any other copy (a QoS 1 duplicate, or the gateway asking again with a fresh `nonce` and
   signature) is answered by repeating the id's last ack.

The exceptions are failures that say nothing about the signed command (`fetch_failed`,
`integrity`, `not_yet_valid`): a later copy of such an id is checked as a new command and may
still play. A speaker with gateway keys records a rejection only for an authentic (signed)
command, so a forged copy cannot use up a genuine id.

Refusals of copies that did not prove themselves (`malformed`, `unsigned`, `unknown_key`,
`revoked_key`, `bad_signature`, `replayed`) are rate limited on the speaker: at most 30 a
minute (a burst of 30, refilled evenly); past that the speaker stays silent and counts them. A
forged command sent to a whole city then comes back as a few security events, not one ack per
speaker per command, and nothing is lost: a genuine command left unanswered is asked again by
the gateway.

## Proof of play

A `played` ack is proof, and the gateway checks it: its `audio_sha256` must be the `sha256` of
one of the encodings the command carried, and its `played_ms` that encoding's `duration_ms`
within max(1000 ms, 5 %) (an interrupted or pre-empted play is never `played`). A play that
made a sound (every command with `audible` true) must also report `level_dbfs` above
-70 dBFS, the silence floor: a `played` ack with no level, or one at or below the floor, is no
proof (problem `silent`). Only a command with `audible` false (a test logged without a sound,
`played_ms` 0) is exempt. Otherwise the delivery ends `failed` with reason `bad_proof` and a
security event is recorded.

`level_dbfs` is what the speaker wrote to its output: the RMS of all the 16-bit PCM samples of
the play, in dBFS (full scale 32768 is 0 dBFS), rounded to two decimals. The gateway's audio
is normalised to about -16 LUFS, which a speaker measures near -17 dBFS.

Each speaker makes its own Ed25519 receipt key at installation and keeps the private half; its
public half is enrolled with the gateway (`PUT /api/v1/speakers/{{speaker_id}}/receipt-key`, or
`PUT /api/v1/speakers/receipt-keys` for many) with proof of possession: `proof`, the receipt
key's Ed25519 signature (base64) of the UTF-8 lines `maeul-receipt-key/v1`, the city code, the
speaker code and the base64 public key as sent, joined by a line feed with none after the last
(else `422 invalid_receipt_key_proof`). The public key must be a canonical encoding of a
point of the prime-order subgroup: small-order points (all zeros among them) and points with a
small-order component are refused (`422 invalid_receipt_key`), since anyone could forge
signatures for them; a receipt is never verified against a small-order key. An enrolled
speaker's `played` ack carries `receipt_sig`: the Ed25519 signature over these UTF-8 lines
joined by a line feed (no final one): `maeul-receipt/v1`, `command_id`, `broadcast_id`,
`speaker`, `audio_sha256`, `played_ms` (decimal), `level_dbfs` (exactly two decimals, as
`-16.20`; `0.00` for zero; empty when the ack has none), `at_ms` (decimal). A missing or wrong
signature also ends `bad_proof`.

A resend the speaker had already played as an earlier command (`already_played_as`) is
answered with a new receipt, never the earlier one: the lines carry the resend's own
`command_id` and `broadcast_id`, a fresh `at_ms` (the time of this ack), and the earlier
playback's `audio_sha256`, `played_ms` and `level_dbfs`. The earlier command's receipt sent
again does not verify for the resend (`bad_proof`).

`GET /api/v1/broadcasts/{{broadcast_id}}/proof` exports every receipt with the public keys,
signed by the gateway with its command-signing key (`key_id`, in the key ring), so anyone can
check them again (`maeul proof verify`).

## Checks a speaker makes

In this order, before acting on a command (`check_command` in the contract):

1. `city` is the speaker's city and `scope` covers its district, village or id, else
   `out_of_scope`. The scope is checked whatever topic delivered the command, and it is signed,
   so a command cannot be redirected to another village.
2. Its clock is before `expires_at_ms`, else `expired`.
3. `issued_at_ms` is at most {skew_ms} ms ({skew_ms // 1000} s) ahead of its
   clock (clocks drift), else `not_yet_valid`.
4. When the speaker is provisioned with gateway public keys: `sig` and `key_id` are present
   (else `unsigned`), `key_id` is not a revoked key (else `revoked_key`, see *Key revocation*),
   names a key it trusts (else `unknown_key`, see *Key rotation*)
   and the signature verifies with that key (else `bad_signature`). See the `command` message
   for the signing bytes.

Then: a speaker plays the first `audio` encoding in a codec it supports (`unsupported_codec`
when none) and checks the audio bytes against `size` and `sha256` (`integrity`). Inline bytes
are checked before `received`. Bytes behind a URL are fetched after `received`: a mismatch is
then acknowledged `rejected`/`integrity`, an unreachable URL `failed`/`fetch_failed`.

## Key rotation

The gateway signs with one key at a time and can rotate it (`POST /api/v1/keys/rotate`). A
speaker is provisioned with at least one trusted public key (`GET /api/v1/keys`, or the key ring
of its provisioning). When a command names a `key_id` it does not trust, it holds the command
and fetches the key ring `GET /api/v1/keys/ring` (no credentials) before checking it. A rate
limit never refuses a command: the command is checked only once a fetch that started after it
arrived has answered (one fetch serves every command held at its start, and the one under way
for the same `key_id` serves later commands under that id). The reference speakers ask at most
once a minute per unknown `key_id` and at most 3 times per 10 s in all, so commands naming
made-up key ids delay a genuine one by at most those 10 s; they hold at most 16 commands at a
time (further ones are checked at once) and none past its `expires_at_ms`.

The ring lists every key of the city, oldest first (`KeyRing` schema); each entry after the
first is endorsed by the key before it: `sig` is the Ed25519 signature, by the key `endorsed_by`,
of the UTF-8 bytes

```
maeul-key/v1\\n{{city}}\\n{{key_id}}\\n{{public_key}}
```

where `\\n` is one line feed (0x0a), `{{city}}` the ring's `city`, `{{key_id}}` and
`{{public_key}}` the entry's own fields as they appear in the JSON (the public key as its
standard base64 text), and nothing follows the public key (no final line feed). A speaker trusts
an entry when a key it already trusts endorsed it, directly or through a chain of such entries,
and the ring's `city` is its own; it ignores every other entry. A command whose key is still not
trusted is refused as `unknown_key`. That refusal is not final: the gateway keeps the delivery
open (`sent`, reason `rejected: unknown_key`) and asks again when its ack is due, signed afresh
by its current key, like an unanswered command; a speaker that has learned the key since plays
it. When the retries run out the delivery ends `expired` with that reason (and a cancel).

## Key revocation

A city administrator revokes a key that is stolen or in doubt, active or retired
(`POST /api/v1/keys/{{key_id}}/revoke`); every revocation also starts a new active key. The ring
then leaves the revoked key out of `keys` (each remaining key is endorsed by the nearest earlier
key that is not revoked) and lists it in `revoked`: `sig` is the Ed25519 signature, by the key
`revoked_by` (the gateway's active key), of the UTF-8 bytes

```
maeul-revoke/v1\n{{city}}\n{{key_id}}
```

(same conventions as above). A speaker applies a revocation signed by a key it trusts other than
the revoked one: it drops the revoked key for good (a later ring without the revocation does not
bring it back; the reference agent keeps revoked key ids in its journal across restarts), drops
every key it had learned only through the revoked one, never again learns a key the revoked one
vouches for, and refuses commands under it as `revoked_key` without asking the ring.

A speaker learns a revocation at its next fetch of the ring. Because a revocation starts a new
key, the gateway's next command to the speaker (any broadcast, or a test broadcast with
`test_playback` `log`) names a `key_id` it does not know, and that makes it fetch the ring.
Until then it still trusts the revoked key: after revoking a stolen key, send such a command to
the speakers at once.

## Audio: inline or by URL

Short clips (up to the gateway's `inline_audio_max_bytes`, {_size(inline_max)} by default) travel
inline as base64 in `audio[].data`: the speaker can play at once, with no extra round trip.
Longer audio travels as `audio[].url`, fetched over HTTP(S) from the gateway and checked
against `size` and `sha256`. The URL needs no credentials and is immutable (`ETag` is the
quoted sha256); it serves one byte range per request (`Range: bytes=START-END`, `bytes=START-`
or `bytes=-LENGTH`, answered `206 Partial Content` with `Content-Range`; `Accept-Ranges: bytes`
on every answer; `416` with `Content-Range: bytes */SIZE` for a range past the end; `HEAD`
gives the headers alone), so a download broken off on a weak link resumes where it stopped.
Keeping MQTT messages small matters: a speaker on a slow mobile link
receives its messages in order, so a large command in front of a `cancel` would hold that cancel
back. Either way the signed `sha256` authenticates the bytes.

## Provisioning

`GET /api/v1/devices/{{speaker}}/provisioning` on the gateway's HTTP API (see its OpenAPI
document) answers with everything a speaker needs to join (`Provisioning` schema): the
broker's URL (`broker_url`, `mqtt://` or `mqtts://`), its client id and user name, the MQTT
Session Expiry Interval (`session_expiry_s`) and keep-alive (`keepalive_s`) to connect with,
the heartbeat interval (`heartbeat_s`) and when the gateway counts it offline
(`offline_after_s`), the topics to subscribe to and publish on, where audio and the key ring
are, and the key ring itself. The speaker asks with HTTP Basic authentication: its speaker id
and the broker password issued to it; an installer may ask with a bearer token instead (a city
administrator, or a district officer of the speaker's district).

## Presence

A speaker publishes `online` (birth, retained) after every connect, `heartbeat` (QoS
{int(contract.HEARTBEAT_QOS)}, not retained) at least every `heartbeat_s` seconds of its
provisioning ({heartbeat_s:g} s by default, the gateway's `heartbeat_s` setting), and its
Will `offline` (retained) is published by the broker when the connection drops. The gateway
treats a speaker it has not heard from for three heartbeat
intervals as offline, and catches it up when it returns: each command it has not
acknowledged `received` is sent again on its speaker topic. When its birth says
`session_present: true` (the broker kept its session, so what was published meanwhile is
already on its way from the broker), that catch-up waits the gateway's `catchup_grace_s`
setting ({catchup_grace_s:g} s by default) and then sends only what is still unacknowledged.
A command acknowledged `received` is next due `playing` or `played` only after the commands
the speaker holds ahead of it (at its priority or above) and its own length have had time to
play, plus {int(ACK_GRACE.total_seconds())} s; a speaker working through a backlog is not asked
again before a command's turn can come.

## Size limits

Receivers refuse larger payloads: command {_size(contract.MAX_COMMAND_BYTES)}, ack
{_size(contract.MAX_ACK_BYTES)}, presence {_size(contract.MAX_PRESENCE_BYTES)}. Payloads are UTF-8
JSON. Senders leave out fields whose value is null; receivers also accept an explicit null.
"""


def _command_description(example: contract.Command) -> str:
    signing = example.signing_bytes().decode()
    return f"""\
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

Example: the `play-inline` example below is signed with the example key `{EXAMPLE_KEY_ID}`,
whose public key (raw, base64) is `{EXAMPLE_PUBLIC_KEY}`. Its signing bytes are:

```
{signing}
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
"""


def _message(
    *,
    name: str,
    title: str,
    summary: str,
    description: str,
    payload: str,
    examples: Mapping[str, tuple[str, bytes]],
    content_type_property: bool,
    content_type: str = "application/json",
) -> dict[str, Any]:
    binding: dict[str, Any] = {}
    if content_type_property:
        binding["contentType"] = content_type
    binding["bindingVersion"] = MQTT_BINDING
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "description": description,
        "contentType": content_type,
        "payload": _ref("components", "schemas", payload),
        "bindings": {"mqtt": binding},
        "examples": [
            {"name": key, "summary": text, "payload": _wire(body)}
            for key, (text, body) in examples.items()
        ],
    }


def _live_message(name: str, title: str, summary: str, description: str) -> dict[str, Any]:
    """A live frame: binary, so its examples are the frame's bytes in base64."""
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "description": description,
        "contentType": "application/octet-stream",
        "payload": _ref("components", "schemas", "LiveFrame"),
        "bindings": {"mqtt": {"bindingVersion": MQTT_BINDING}},
        "examples": [
            {"name": key, "summary": text, "payload": base64.b64encode(body).decode("ascii")}
            for key, (text, body) in example_live_frames(name).items()
        ],
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


LIVE_FRAME_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "format": "binary",
    "minLength": contract.LIVE_HEADER_BYTES,
    "maxLength": contract.MAX_LIVE_FRAME_BYTES,
    "description": f"""\
A binary live frame: a {contract.LIVE_HEADER_BYTES}-byte header (big-endian), then the payload.

| offset | bytes | field |
|---|---|---|
| 0 | 1 | magic `0x{contract.LIVE_MAGIC:02x}` |
| 1 | 1 | kind: {", ".join(f"{int(k)} {k.name.lower()}" for k in contract.LiveKind)} |
| 2 | 1 | flags: audio: bit 0 starts a talk spurt (re-anchor the playout); end: the reason, \
{", ".join(f"{int(r)} {r.name.lower()}" for r in contract.EndReason)} |
| 3 | 1 | reserved, 0 |
| 4 | 16 | session: the broadcast id |
| 20 | 4 | seq: the audio frame's number, from 0 without gaps; an end carries the last one |
| 24 | 8 | at_ms: when the gateway received the frame (Unix ms): latency is measured from it |
| 32 | {contract.LIVE_TAG_BYTES} | tag: the first {contract.LIVE_TAG_BYTES} bytes of \
HMAC-SHA256(key, bytes 0-31 + payload) |
| {contract.LIVE_HEADER_BYTES} | 0-{contract.MAX_LIVE_PAYLOAD_BYTES} | payload: one 20 ms \
Opus packet (audio); empty for pause and end |

The key is the `live.key` of the signed play command that started the stream (base64url of
32 bytes), so only the gateway that signed the command can make frames a speaker accepts; a
frame with a wrong tag, an unknown session or out of size is dropped. In the examples the
frames are shown in base64; on the wire they are the raw bytes.""",
}


def messages() -> dict[str, Any]:
    commands = example_commands()
    acks = example_acks()
    presence = example_presence()
    return {
        "command": _message(
            name="Command",
            title="Command",
            summary="Play a message, or cancel a broadcast.",
            description=_command_description(commands["play-inline"]),
            payload="Command",
            content_type_property=True,
            examples={
                "play-inline": (
                    "A village notice with a short Opus clip inline (illustrative bytes).",
                    contract.encode_command(commands["play-inline"]),
                ),
                "play-url": (
                    "A disaster warning for a district, two encodings behind URLs.",
                    contract.encode_command(commands["play-url"]),
                ),
                "cancel": (
                    "Cancel the disaster warning.",
                    contract.encode_command(commands["cancel"]),
                ),
                "resend": (
                    "The village notice resent to one speaker that missed it: it supersedes "
                    "the first command.",
                    contract.encode_command(commands["resend"]),
                ),
            },
        ),
        "ack": _message(
            name="Ack",
            title="Acknowledgement",
            summary="A speaker's own acknowledgement of one command.",
            description=(
                "A speaker's own acknowledgement of one command id. For one id the statuses "
                "move `received` → `playing` → `played`, or end in `failed` (reason: a "
                "`FailReason`) or `rejected` (reason: a `RejectReason`). A later copy of a "
                "command id the speaker already recorded is answered by the rule under "
                "*Delivery and acknowledgement*: refused when the copy is forged, unsigned or "
                "a replay, else the id's last ack again.\n\n"
                "A payload that is not a valid command but still has a readable `id` and "
                "`broadcast_id` is answered `rejected`/`malformed`; without them the speaker "
                "stays silent."
            ),
            payload="Ack",
            content_type_property=False,
            examples={
                status: (ACK_EXAMPLES[status], contract.encode_ack(ack))
                for status, ack in acks.items()
            },
        ),
        "liveAudio": _live_message(
            "LiveAudio",
            "Live audio frame",
            "20 ms of a live broadcast's audio.",
            f"QoS {int(contract.LIVE_FRAME_QOS)}: a frame is stale after a fraction of a second, "
            "so a lost one is concealed, never resent. Speakers hold a short jitter buffer "
            "(`live.jitter_ms` of the command) and play in `seq` order.",
        ),
        "liveControl": _live_message(
            "LiveControl",
            "Live pause or end",
            "The talker paused, or the stream ended.",
            f"QoS {int(contract.LIVE_CONTROL_QOS)}. A pause lets speakers wait up to "
            "`live.idle_ms` instead of `live.stall_ms` for the next frame; an end (its flags "
            "the reason) finishes the stream once every frame up to its `seq` has played: "
            "`stopped` is acked `played`, the others `failed` with reason `interrupted`. "
            "Without frames for `stall_ms` a speaker ends the stream on its own.",
        ),
        "presenceBirth": _message(
            name="Presence",
            title="Birth",
            summary="`online`: the speaker is connected (retained).",
            description=(
                "Published, retained, right after every connect, with the codecs the speaker "
                "plays and its firmware."
            ),
            payload="Presence",
            content_type_property=False,
            examples={"birth": ("After connecting.", contract.encode_presence(presence["birth"]))},
        ),
        "presenceHeartbeat": _message(
            name="Presence",
            title="Heartbeat",
            summary=f"`heartbeat`: the speaker is still there (QoS {int(contract.HEARTBEAT_QOS)}, "
            "not retained).",
            description=(
                f"Published periodically. QoS {int(contract.HEARTBEAT_QOS)} and not retained, "
                "so a lost heartbeat costs "
                "nothing and the retained birth or will stays the topic's state."
            ),
            payload="Presence",
            content_type_property=False,
            examples={
                "heartbeat": ("A heartbeat.", contract.encode_presence(presence["heartbeat"]))
            },
        ),
        "presenceWill": _message(
            name="Presence",
            title="Will",
            summary="`offline`: the speaker is gone (retained).",
            description=(
                "Registered as the MQTT Will at CONNECT (retained), so the broker publishes it "
                "when the connection drops without a DISCONNECT. A speaker that shuts down "
                "cleanly publishes the same message itself first, because a normal DISCONNECT "
                "discards the Will. Its `at_ms` is when the Will was registered (the connect "
                "time): the broker publishes it unchanged.\n\n"
                "An empty retained payload on a presence topic only clears the retained state "
                "(a speaker taken out of service); receivers ignore it."
            ),
            payload="Presence",
            content_type_property=False,
            examples={
                "will": ("The Will, as registered.", contract.encode_presence(presence["will"]))
            },
        ),
    }


SEGMENT_PARAMETERS: Final[Mapping[str, tuple[str, str]]] = {
    "city": ("City code (the gateway's `city_code` setting).", CITY),
    "district": ("District code.", DISTRICT),
    "village": ("Village code.", VILLAGE),
    "speaker": ("Speaker id, also its MQTT username.", SPEAKER),
}


def _parameters(topic: Callable[..., str], own: Mapping[str, Any]) -> dict[str, Any]:
    names = list(inspect.signature(topic).parameters)
    return {name: own.get(name) or _ref("components", "parameters", name) for name in names}


CHANNELS: Final[Sequence[tuple[str, Callable[..., str], str, str, tuple[str, ...]]]] = (
    (
        "commandsAll",
        contract.command_topic_all,
        "Commands for the whole city",
        "Commands for every speaker of the city. Every speaker of the city subscribes.",
        ("command",),
    ),
    (
        "commandsDistrict",
        contract.command_topic_district,
        "Commands for a district",
        "Commands for every speaker of one district.",
        ("command",),
    ),
    (
        "commandsVillage",
        contract.command_topic_village,
        "Commands for a village",
        "Commands for every speaker of one village.",
        ("command",),
    ),
    (
        "commandsSpeaker",
        contract.command_topic_speaker,
        "Commands for one speaker",
        "Commands for one speaker: scoped broadcasts, resends when no ack came, and catch-up "
        "when a speaker comes back online.",
        ("command",),
    ),
    (
        "acks",
        contract.ack_topic,
        "A speaker's acks",
        "A speaker's acknowledgements. Only that speaker may publish here (broker ACL).",
        ("ack",),
    ),
    (
        "presence",
        contract.presence_topic,
        "A speaker's presence",
        "Birth, heartbeats and will of one speaker. The retained message (birth or will) is "
        "the speaker's last known state for any non-shared subscriber, such as a field tool. "
        "Retained messages are not sent to a new shared subscription (MQTT 5.0, 4.8.2), so "
        "the gateway follows live births, heartbeats and wills.",
        ("presenceBirth", "presenceHeartbeat", "presenceWill"),
    ),
    (
        "liveAll",
        contract.live_topic_all,
        "Live audio for the whole city",
        "The frames of a live broadcast to every speaker of the city. Every speaker subscribes.",
        ("liveAudio", "liveControl"),
    ),
    (
        "liveDistrict",
        contract.live_topic_district,
        "Live audio for a district",
        "The frames of a live broadcast to every speaker of one district.",
        ("liveAudio", "liveControl"),
    ),
    (
        "liveVillage",
        contract.live_topic_village,
        "Live audio for a village",
        "The frames of a live broadcast to every speaker of one village.",
        ("liveAudio", "liveControl"),
    ),
)


def channels() -> dict[str, Any]:
    own_speaker = {
        "speaker": {
            "description": SEGMENT_PARAMETERS["speaker"][0]
            + " Equal to the `speaker` field of the payload.",
            "examples": [SPEAKER],
            "location": "$message.payload#/speaker",
        }
    }
    result: dict[str, Any] = {}
    for channel_id, topic, title, description, names in CHANNELS:
        own = own_speaker if channel_id in ("acks", "presence") else {}
        result[channel_id] = {
            "address": address(topic),
            "title": title,
            "description": description,
            "parameters": _parameters(topic, own),
            "messages": {name: _ref("components", "messages", name) for name in names},
        }
    return result


def _operation(
    channel: str,
    action: str,
    role: str,
    title: str,
    description: str,
    bindings: dict[str, Any],
    message_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    names = message_names or [
        name for ch, _, _, _, all_names in CHANNELS if ch == channel for name in all_names
    ]
    return {
        "action": action,
        "channel": _ref("channels", channel),
        "title": title,
        "description": description,
        "tags": [{"name": role}],
        "bindings": bindings,
        "messages": [_ref("channels", channel, "messages", name) for name in names],
    }


def operations() -> dict[str, Any]:
    expiry = {
        "type": "integer",
        "minimum": 1,
        "maximum": 4294967295,
        "description": (
            "Seconds from publishing until `expires_at_ms`, rounded up, at least 1 "
            "(`message_expiry_seconds` in the contract)."
        ),
    }
    send_command = _qos(contract.COMMAND_QOS, retain=False, extra={"messageExpiryInterval": expiry})
    receive_command = _qos(contract.COMMAND_QOS)
    scopes = {
        "All": "every speaker of the city",
        "District": "every speaker of one district",
        "Village": "every speaker of one village",
        "Speaker": "one speaker (resends and catch-up too)",
    }
    result: dict[str, Any] = {}
    for suffix, whom in scopes.items():
        result[f"publishCommand{suffix}"] = _operation(
            f"commands{suffix}",
            "send",
            "gateway",
            f"Publish a command for {whom}",
            f"QoS {int(contract.COMMAND_QOS)}, not retained, with the Message Expiry Interval "
            "set from `expires_at_ms` and the Content Type `application/json`. The PUBACK only "
            "means the broker has it.",
            send_command,
        )
    for suffix, whom in scopes.items():
        result[f"receiveCommand{suffix}"] = _operation(
            f"commands{suffix}",
            "receive",
            "speaker",
            f"Receive commands for {whom}",
            f"Subscribed with QoS {int(contract.COMMAND_QOS)} in a persistent session. Check the "
            "command, record its id, then ack.",
            receive_command,
        )
    live_scopes = {k: v for k, v in scopes.items() if k != "Speaker"}
    for suffix, whom in live_scopes.items():
        result[f"publishLiveAudio{suffix}"] = _operation(
            f"live{suffix}",
            "send",
            "gateway",
            f"Stream live audio to {whom}",
            f"QoS {int(contract.LIVE_FRAME_QOS)}, not retained: one frame every 20 ms, once per "
            "group topic, while a live broadcast's play command (sent first) names the stream.",
            _qos(contract.LIVE_FRAME_QOS, retain=False),
            ["liveAudio"],
        )
        result[f"publishLiveControl{suffix}"] = _operation(
            f"live{suffix}",
            "send",
            "gateway",
            f"Pause or end a live stream to {whom}",
            f"QoS {int(contract.LIVE_CONTROL_QOS)}, not retained.",
            _qos(contract.LIVE_CONTROL_QOS, retain=False),
            ["liveControl"],
        )
    for suffix, whom in live_scopes.items():
        result[f"receiveLive{suffix}"] = _operation(
            f"live{suffix}",
            "receive",
            "speaker",
            f"Receive live streams to {whom}",
            f"Subscribed with QoS {int(contract.LIVE_SUBSCRIPTION_QOS)}, so that pauses and ends "
            f"arrive at QoS {int(contract.LIVE_CONTROL_QOS)} while audio stays at QoS "
            f"{int(contract.LIVE_FRAME_QOS)}. Frames of a session the speaker has no play "
            "command for, or whose tag does not verify, are dropped.",
            _qos(contract.LIVE_SUBSCRIPTION_QOS),
        )
    result["publishAck"] = _operation(
        "acks",
        "send",
        "speaker",
        "Acknowledge a command",
        f"QoS {int(contract.ACK_QOS)}, not retained, on the speaker's own ack topic.",
        _qos(contract.ACK_QOS, retain=False),
    )
    result["receiveAcks"] = _operation(
        "acks",
        "receive",
        "gateway",
        "Receive every speaker's acks",
        f"Subscribed as `{contract.ack_subscription()}` (QoS {int(contract.ACK_QOS)}), "
        "an MQTT 5 shared subscription: each ack goes to one replica of the group.",
        _qos(contract.ACK_QOS, extra={"x-shared-subscription": contract.ack_subscription()}),
    )
    result["publishBirth"] = _operation(
        "presence",
        "send",
        "speaker",
        "Announce the speaker after connecting",
        f"QoS {int(contract.PRESENCE_QOS)}, retained.",
        _qos(contract.PRESENCE_QOS, retain=True),
        ["presenceBirth"],
    )
    result["publishHeartbeat"] = _operation(
        "presence",
        "send",
        "speaker",
        "Send a heartbeat",
        f"QoS {int(contract.HEARTBEAT_QOS)}, not retained.",
        _qos(contract.HEARTBEAT_QOS, retain=False),
        ["presenceHeartbeat"],
    )
    result["publishWill"] = _operation(
        "presence",
        "send",
        "speaker",
        "Go offline (the Will)",
        f"Registered as the Will in CONNECT (QoS {int(contract.PRESENCE_QOS)}, retained) and "
        "published by the broker when the connection drops; published by the speaker itself "
        "before a clean shutdown.",
        _qos(contract.PRESENCE_QOS, retain=True),
        ["presenceWill"],
    )
    result["receivePresence"] = _operation(
        "presence",
        "receive",
        "gateway",
        "Receive every speaker's presence",
        f"Subscribed as `{contract.presence_subscription()}` (QoS "
        f"{int(contract.PRESENCE_QOS)}), an MQTT 5 shared subscription.",
        _qos(
            contract.PRESENCE_QOS,
            extra={"x-shared-subscription": contract.presence_subscription()},
        ),
    )
    return result


def _server(port: int, protocol: str, title: str, description: str) -> dict[str, Any]:
    return {
        "host": f"{{host}}:{port}",
        "protocol": protocol,
        "protocolVersion": "5.0",
        "title": title,
        "description": description,
        "variables": {"host": {"default": "localhost", "description": "The broker's host name."}},
        "security": [
            _ref("components", "securitySchemes", "speakerPassword"),
            _ref("components", "securitySchemes", "gatewayPassword"),
        ],
        "bindings": {"mqtt": {"cleanSession": False, "bindingVersion": MQTT_BINDING}},
    }


def document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Maeul MQTT wire protocol",
            "version": str(contract.PROTOCOL_VERSION),
            "description": _info_description(),
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
            "tags": [
                {"name": "gateway", "description": "Performed by every gateway replica."},
                {"name": "speaker", "description": "Performed by every speaker."},
            ],
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": _server(
                1883,
                "mqtt",
                "MQTT 5 broker",
                "Plain MQTT (`mqtt://`, port 1883), for the gateway and tools on the private "
                "network.",
            ),
            "brokerTls": _server(
                8883,
                "secure-mqtt",
                "MQTT 5 broker over TLS",
                "MQTT over TLS (`mqtts://`, port 8883), for speakers on the internet.",
            ),
        },
        "channels": channels(),
        "operations": operations(),
        "components": {
            "schemas": payload_schemas(),
            "messages": messages(),
            "parameters": {
                name: {
                    "description": f"{text} Matches {SEGMENT_RULE}.",
                    "examples": [sample],
                }
                for name, (text, sample) in SEGMENT_PARAMETERS.items()
            },
            "securitySchemes": {
                "speakerPassword": {
                    "type": "userPassword",
                    "description": (
                        "One MQTT user per speaker, named by its speaker id. The broker's ACL "
                        "lets it read the group command topics and its own speaker topic, and "
                        "write only its own ack and presence topics."
                    ),
                },
                "gatewayPassword": {
                    "type": "userPassword",
                    "description": "The gateway's MQTT user: reads and writes the topic tree.",
                },
            },
        },
    }


# --------------------------------------------------------------------------------------------
# YAML

WRAP: Final = 96
_ITEM = re.compile(r"^(?:- |\d+\. )")


def reflow(text: str) -> str:
    """Re-wrap the paragraphs and list items of a Markdown text; keep headings, tables, code."""
    blocks: list[str] = []
    for block in text.strip("\n").split("\n\n"):
        if block.startswith(("#", "|", "```")):
            blocks.append(block)
            continue
        items: list[list[str]] = []
        for line in block.splitlines():
            if _ITEM.match(line) or not items:
                items.append([line.strip()])
            else:
                items[-1].append(line.strip())
        wrapped = []
        for words in items:
            marker = _ITEM.match(words[0])
            wrapped.append(
                textwrap.fill(
                    " ".join(words),
                    width=WRAP,
                    subsequent_indent=" " * (marker.end() if marker else 0),
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        blocks.append("\n".join(wrapped))
    return "\n\n".join(blocks) + "\n"


def _reflow_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: reflow(value)
            if key == "description" and isinstance(value, str) and "\n" in value
            else _reflow_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_reflow_descriptions(item) for item in node]
    return node


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    body = yaml.dump(
        _reflow_descriptions(document()),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return HEADER + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the committed file is stale"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            sys.stderr.write(f"{TARGET.name} is stale: run python openapi/build_asyncapi.py\n")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
