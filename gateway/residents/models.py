"""Tables for households, residents and their consent, and sign-up codes.

No column holds a phone number in the clear: each is AES-GCM ciphertext with the id of the key
that sealed it, a keyed hash for lookups and the last four digits for the mask
(`gateway.residents.crypto`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class Channel(StrEnum):
    SMS = "sms"
    WEB_PUSH = "web_push"
    INDOOR_RECEIVER = "indoor_receiver"


class ResidentState(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"  # the resident withdrew consent: personal fields erased
    EXPIRED = "expired"  # consent ran out unrenewed: personal fields erased


class ConsentSource(StrEnum):
    SIGNUP = "signup"  # the resident, on the residents' page, with an SMS code
    STAFF = "staff"  # entered by an officer (consent on paper or by phone)
    IMPORT = "import"  # a CSV import of consent collected on paper


# What residents consent to: the only purpose their number may be used for.
PURPOSE_NOTICES: Final = "village_notices"


class Household(Base):
    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("village_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    village_id: Mapped[int] = mapped_column(
        ForeignKey("villages.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(200))
    # The indoor receiver (a speaker of kind household_receiver) in this home, if any.
    receiver_id: Mapped[int | None] = mapped_column(
        ForeignKey("speakers.id", ondelete="SET NULL"), default=None, index=True
    )
    receiver_volume: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    # Hold notices other than disaster alerts during quiet hours (a disaster always plays).
    hold_non_urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Resident(Base):
    """A resident who consented to hear the village's notices on a channel of their own.

    Withdrawn or expired, the row stays for counting only: village, state and dates; the number,
    its hash, the language and the channels are gone."""

    __tablename__ = "residents"
    __table_args__ = (UniqueConstraint("city_id", "phone_lookup"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    village_id: Mapped[int] = mapped_column(
        ForeignKey("villages.id", ondelete="CASCADE"), index=True
    )
    household_id: Mapped[int | None] = mapped_column(
        ForeignKey("households.id", ondelete="SET NULL"), default=None, index=True
    )
    state: Mapped[str] = mapped_column(String(16), default=ResidentState.ACTIVE.value)
    phone_key_id: Mapped[str | None] = mapped_column(String(16), default=None)
    phone_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    phone_lookup: Mapped[str | None] = mapped_column(String(64), default=None)
    phone_last4: Mapped[str | None] = mapped_column(String(4), default=None)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_purpose: Mapped[str] = mapped_column(String(32), default=PURPOSE_NOTICES)
    consent_source: Mapped[str] = mapped_column(String(16))
    consent_version: Mapped[str] = mapped_column(String(32))
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime())
    consent_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


# What a code by SMS proves the number's owner wants.
SIGNUP: Final = "signup"
WITHDRAWAL: Final = "withdrawal"


class PhoneVerification(Base):
    """A sign-up (or a withdrawal) waiting for its SMS code. The code is kept only as a keyed
    hash; the number sealed as a resident's is (the row's id as associated data)."""

    __tablename__ = "phone_verifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default=SIGNUP)
    village_id: Mapped[int | None] = mapped_column(
        ForeignKey("villages.id", ondelete="CASCADE"), default=None
    )
    phone_key_id: Mapped[str | None] = mapped_column(String(16), default=None)
    phone_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    phone_lookup: Mapped[str] = mapped_column(String(64), index=True)
    # Keyed hash of the client's address: the per-source limit without keeping the address.
    source_lookup: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    language: Mapped[str] = mapped_column(String(16))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
