"""Request and response shapes of the households and residents API. No response carries a
phone number but masked, except the reveal's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.residents.models import Channel

Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# A number as typed; checked and normalised by the service (422 invalid_phone_number), so a
# wrong one is never echoed back in a validation message.
PhoneInput = Annotated[
    str, Field(min_length=1, max_length=32, examples=["010-1234-5678"], repr=False)
]
Language = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", max_length=16),
    Field(description="The resident's language (BCP 47: ko, en, vi, zh, ...).", examples=["ko"]),
]
Channels = Annotated[list[Channel], Field(min_length=1, max_length=3)]
Volume = Annotated[int, Field(ge=0, le=100, description="The indoor receiver's volume, 0-100.")]


class HouseholdCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: Address = Field(examples=["상촌리 123-4"])
    receiver_id: int | None = Field(
        default=None, description="A speaker of kind household_receiver in the same village."
    )
    receiver_volume: Volume | None = None
    hold_non_urgent: bool = Field(
        default=False, description="Hold notices other than disaster alerts in quiet hours."
    )


class HouseholdUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receiver_id: int | None = None
    receiver_volume: Volume | None = None
    hold_non_urgent: bool | None = None


class HouseholdRead(BaseModel):
    id: int
    village_id: int
    address: str
    receiver_id: int | None
    receiver_volume: int | None
    hold_non_urgent: bool
    resident_count: int = Field(description="Residents with consent in force.")
    created_at: datetime


class HouseholdPage(BaseModel):
    items: list[HouseholdRead]
    total: int
    limit: int
    offset: int


class ResidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    household_id: int | None = None
    phone: PhoneInput
    language: Language = "ko"
    channels: Channels
    consented_at: datetime = Field(
        description="When the resident consented (on paper, by phone); not in the future."
    )
    consent_version: str = Field(
        min_length=1, max_length=32, description="The consent text the resident agreed to."
    )


class ResidentRead(BaseModel):
    id: int
    village_id: int
    household_id: int | None
    state: str = Field(description="active, withdrawn or expired (personal fields erased).")
    phone: str | None = Field(description="Masked: 010-****-5678.", examples=["010-****-5678"])
    language: str | None
    channels: list[str]
    consent_purpose: str
    consent_source: str
    consent_version: str
    consented_at: datetime
    consent_expires_at: datetime


class ResidentPage(BaseModel):
    items: list[ResidentRead]
    total: int
    limit: int
    offset: int


class RevealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=5, max_length=300)
    ] = Field(description="Why the full number is needed; kept in the audit log.")


class RevealedPhone(BaseModel):
    resident_id: int
    phone: str = Field(examples=["010-1234-5678"])


class ChannelCounts(BaseModel):
    sms: int
    web_push: int
    indoor_receiver: int


class HouseholdSummary(BaseModel):
    village_id: int
    households: int
    with_receiver: int
    residents: int = Field(description="Residents with consent in force.")
    by_channel: ChannelCounts
    withdrawn: int = Field(description="Residents who withdrew or whose consent ran out.")


class ImportProblem(BaseModel):
    line: int
    code: str
    ko: str
    en: str


class HouseholdImportReport(BaseModel):
    rows: int
    households_created: int
    residents_created: int


class SignupStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    village_id: int
    phone: PhoneInput
    language: Language = "ko"
    channels: Channels
    consent_version: str = Field(
        min_length=1, max_length=32, description="The version of the consent text shown."
    )
    consent: bool = Field(description="The resident ticked 'I agree'; false is refused.")


class SignupStarted(BaseModel):
    signup_id: str
    expires_at: datetime
    phone: str = Field(description="Masked.", examples=["010-****-5678"])


class SignupVerify(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signup_id: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    code: Annotated[str, StringConstraints(pattern=r"^\d{6}$")]


class SignupDone(BaseModel):
    resident_id: int
    village_id: int
    phone: str = Field(description="Masked.")
    channels: list[str]
    consent_expires_at: datetime
    renewed: bool = Field(description="The number was already signed up: its consent renewed.")


class WithdrawalStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: PhoneInput


class WithdrawalDone(BaseModel):
    withdrawn: bool = Field(
        description="The number was signed up, and now is not: number and choices erased."
    )


class ConsentSection(BaseModel):
    heading: str
    text: str


class ConsentText(BaseModel):
    version: str
    title: str
    sections: list[ConsentSection]
