"""Request and response shapes of enrollment: issuing a code, and redeeming it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from wire import contract


class EnrollmentCodeIssued(BaseModel):
    speaker_id: int
    speaker_code: str = Field(description="The speaker the code enrolls.")
    code: str = Field(
        description="The one-time code, shown this once (16 characters in groups of four; "
        "case, spaces and dashes do not matter).",
        examples=["7K2M-QX9D-4HRT-B1VE"],
    )
    expires_at: datetime = Field(description="Redeem it before this.")


class EnrollmentRedeem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=64, examples=["7K2M-QX9D-4HRT-B1VE"])
    receipt_public_key: str | None = Field(
        default=None,
        max_length=64,
        description="The public half of the receipt key the speaker made for itself (base64 of "
        "the raw 32-byte Ed25519 key): enrolled with the code, so its played acks must carry "
        "receipts signed with it. The private half never leaves the speaker.",
    )
    receipt_key_proof: str | None = Field(
        default=None,
        max_length=128,
        description="With `receipt_public_key`: its signature of the lines "
        '"maeul-enrollment-key/v1", the code (no dashes, upper case) and the public key, '
        "joined by a line feed (base64).",
    )


class EnrollmentRedeemed(BaseModel):
    speaker_id: int
    password: str = Field(
        description="The speaker's new broker password (its user name is in `provisioning`), "
        "shown this once; any earlier one no longer works."
    )
    receipt_key_enrolled: bool = Field(
        description="Whether the request's receipt key is now the speaker's."
    )
    provisioning: contract.Provisioning
