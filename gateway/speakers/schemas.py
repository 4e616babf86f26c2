"""Request and response shapes of the speakers API: speakers, their imports and the fleet."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from gateway.places.schemas import Code, Patch

Kind = Literal["loudspeaker", "household_receiver"]
Codec = Literal["opus", "mp3"]
CODEC_ORDER: tuple[Codec, ...] = ("opus", "mp3")


def canonical_codecs(codecs: list[Codec]) -> list[Codec]:
    """Unique, in the gateway's order of preference."""
    return [c for c in CODEC_ORDER if c in codecs]


Codecs = Annotated[
    list[Codec],
    Field(min_length=1, description="What the speaker can play.", examples=[["opus", "mp3"]]),
    AfterValidator(canonical_codecs),
]
# A speaker clock further than this from the gateway's is flagged (horns of a village start
# within 20 ms of each other when every clock is within it).
CLOCK_TOLERANCE_MS = 50
Firmware = Annotated[str, Field(max_length=64, examples=["1.4.2"])]


class SpeakerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code = Field(examples=["d01-v001-s1"])
    village_id: int
    kind: Kind = "loudspeaker"
    codecs: Codecs = Field(default_factory=lambda: list(CODEC_ORDER))
    firmware: Firmware | None = None


class SpeakerUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"firmware"})

    code: Code | SkipJsonSchema[None] = None
    village_id: int | SkipJsonSchema[None] = Field(
        default=None, description="Moves the speaker to this village."
    )
    kind: Kind | SkipJsonSchema[None] = None
    codecs: Codecs | SkipJsonSchema[None] = None
    firmware: Firmware | None = Field(default=None, description="Null clears it.")


class SpeakerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    village_id: int
    district_id: int
    kind: Kind
    codecs: list[Codec]
    firmware: str | None
    online: bool
    last_seen_at: datetime | None
    created_at: datetime
    clock_offset_ms: int | None = Field(
        default=None,
        description=(
            "The speaker's clock minus the gateway's, as its last heartbeat estimated it "
            "(null: it never said)."
        ),
    )
    clock_off: bool = Field(
        default=False,
        description=(
            f"The clock is off by more than {CLOCK_TOLERANCE_MS} ms: the horn may start out of "
            "step with its neighbours until NTP sets it right."
        ),
    )

    @model_validator(mode="after")
    def _flag_clock(self) -> SpeakerRead:
        offset = self.clock_offset_ms
        self.clock_off = offset is not None and abs(offset) > CLOCK_TOLERANCE_MS
        return self


class SpeakerPage(BaseModel):
    items: list[SpeakerRead]
    total: int
    limit: int
    offset: int


class SpeakersImportReport(BaseModel):
    rows: int
    created: int
    updated: int = Field(description="Moved, or changed kind or codecs.")


class FleetSpeaker(BaseModel):
    """A speaker's identity on the wire: what a (simulated) device subscribes with."""

    code: str
    village_code: str
    district_code: str
    codecs: list[Codec]
    kind: Kind


class FleetPage(BaseModel):
    city_code: str
    items: list[FleetSpeaker]
    total: int
    limit: int | None = Field(description="Null: the whole fleet.")
    offset: int


ReceiptPublicKey = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9+/]{43}=$",
        description=(
            "Base64 of the raw 32-byte Ed25519 public key of the speaker's receipt key: a "
            "canonical point of the prime-order subgroup (a small-order or mixed-order point, "
            "such as all zeros, is refused with invalid_receipt_key)."
        ),
        examples=["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="],
    ),
]


class ReceiptKeyEnroll(BaseModel):
    """The public half of a speaker's own receipt key, with the speaker's proof that it holds
    the private half (which stays on the speaker)."""

    model_config = ConfigDict(extra="forbid")

    public_key: ReceiptPublicKey
    proof: str = Field(
        pattern=r"^[A-Za-z0-9+/]{86}==$",
        description=(
            "Base64 of the Ed25519 signature, by the receipt key, of the UTF-8 lines "
            "`maeul-receipt-key/v1`, the city code, the speaker code and `public_key` (as "
            "sent), joined by a line feed with none after the last: proof of possession."
        ),
    )


class ReceiptKeysEnroll(BaseModel):
    """Receipt keys of many speakers at once, by speaker code, each with its proof."""

    model_config = ConfigDict(extra="forbid")

    keys: dict[Code, ReceiptKeyEnroll] = Field(max_length=100_000)


class ReceiptKeyRead(BaseModel):
    speaker_id: int
    code: str
    public_key: str
    enrolled_at: datetime


class ReceiptKeysEnrolled(BaseModel):
    enrolled: int = Field(description="Speakers whose receipt key was set.")
