"""The speakers table: where each speaker sits, what it can play and when it was last heard."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime

KINDS = ("loudspeaker", "household_receiver")


class Speaker(Base):
    __tablename__ = "speakers"
    __table_args__ = (UniqueConstraint("city_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    village_id: Mapped[int] = mapped_column(
        ForeignKey("villages.id", ondelete="CASCADE"), index=True
    )
    # The speaker's id on the wire (its MQTT topics and client id).
    code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32), default="loudspeaker")
    codecs: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["opus", "mp3"])
    firmware: Mapped[str | None] = mapped_column(String(64), default=None)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Its clock minus the gateway's, as its last presence message estimated it (None: never said).
    clock_offset_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The public half of the speaker's own Ed25519 receipt key (base64 of the raw 32 bytes):
    # its played acks are verified against it. The private half never leaves the speaker.
    receipt_public_key: Mapped[str | None] = mapped_column(String(64), default=None)
    receipt_key_enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
