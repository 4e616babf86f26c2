"""Tables for broker credentials (hashes only) and the security events speakers report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class SpeakerCredential(Base):
    """A speaker's broker password, as Mosquitto's hash; its user name is the speaker's code."""

    __tablename__ = "speaker_credentials"

    speaker_id: Mapped[int] = mapped_column(
        ForeignKey("speakers.id", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BrokerAccount(Base):
    """A broker user that is not a speaker: a gateway, or a monitor reading $SYS."""

    __tablename__ = "broker_accounts"
    __table_args__ = (UniqueConstraint("city_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SecurityEvent(Base):
    """Something a speaker refused, or an ack the gateway could not trust.

    Ids are kept as reported, not as foreign keys: a forged command's ids exist nowhere else.
    """

    __tablename__ = "security_events"
    __table_args__ = (
        Index("ix_security_events_city_id_at", "city_id", "at"),
        Index("ix_security_events_speaker_last", "city_id", "speaker_code", "last_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    speaker_code: Mapped[str | None] = mapped_column(String(64), index=True)
    command_id: Mapped[str | None] = mapped_column(String(32))
    broadcast_id: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 of the first report's topic and payload: the same report recorded twice is one.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    # Reports merged into this event (the same command again, or more of the same kind from
    # the same speaker than the window keeps apart), and when the last of them came.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
