"""Response shapes of the deliveries API: a broadcast's proof-of-play export."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from wire.contract import Receipt


class ExportEncoding(BaseModel):
    codec: str
    sha256: str
    duration_ms: int | None = Field(
        description="How long it plays; null: any length (a live stream's chime, whose "
        "played_ms is the length of the talk)."
    )
    audio_set: str | None = Field(
        default=None,
        description='The language set whose audio it is ("ko+vi"): a speaker is checked '
        "against its own set's encodings only; null: the broadcast's first audio.",
    )


class ExportTolerance(BaseModel):
    min_ms: int = Field(description="played_ms may differ from the duration by this much...")
    fraction: float = Field(description="...or by this fraction of it, whichever is larger.")


class SpeakerProof(BaseModel):
    code: str
    village_code: str
    state: str
    reason: str | None
    public_key: str | None = Field(
        description="Base64 of the speaker's enrolled Ed25519 receipt public key, if any."
    )
    receipt: Receipt | None = Field(
        description="The receipt of its accepted played ack, as signed (null unless played)."
    )
    verified: bool | None = Field(description="Whether the gateway verified its signature.")
    audio_set: str | None = Field(
        default=None,
        description="The language set whose audio it was sent (null: the broadcast's first).",
    )


class ProofExport(BaseModel):
    """Everything needed to check a broadcast's proofs of play offline: each played speaker's
    signed receipt, its public key, and the encodings the broadcast's commands carried; signed
    by the gateway with its command-signing key (``key_id``, in the city's key ring), so no
    field can be changed, added or removed without the signature failing.

    ``sig`` is base64 of the Ed25519 signature over the UTF-8 bytes
    ``"maeul-proof-export/v1\n"`` followed by the export as JSON without its ``sig`` member:
    object keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII characters as
    themselves; the JSON values exactly as this body carries them."""

    v: Literal[1] = 1
    city: str
    broadcast_id: str
    command_id: str
    mode: str
    exported_at: datetime
    silent_ok: bool = Field(
        description="A test or exercise: a speaker may have logged it without a sound "
        "(played_ms 0)."
    )
    tolerance: ExportTolerance
    encodings: list[ExportEncoding]
    speakers: list[SpeakerProof]
    key_id: str = Field(description="The gateway signing key that signed this export.")
    sig: str | None = Field(
        default=None,
        description="The gateway's Ed25519 signature over the export (see above), base64.",
    )
