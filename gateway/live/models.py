"""The live-session table: which broadcasts are streams, their frame key and how they went."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class LiveSession(Base):
    """One live broadcast (its row in ``broadcasts`` has the targets, deliveries and archive).

    The frame key sits here so that the outbox of any replica can put it into the signed start
    command; it is erased when the session ends.
    """

    __tablename__ = "live_sessions"
    __table_args__ = (Index("ix_live_sessions_open", "city_id", "state"),)

    broadcast_id: Mapped[str] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    # open: being spoken (or paused, or waiting for its client within the grace period); ended.
    state: Mapped[str] = mapped_column(String(16), default="open")
    input_format: Mapped[str] = mapped_column(String(16))
    key: Mapped[str | None] = mapped_column(String(64), default=None)
    jitter_ms: Mapped[int] = mapped_column(Integer)
    stall_ms: Mapped[int] = mapped_column(Integer)
    idle_ms: Mapped[int] = mapped_column(Integer)
    replica_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Renewed while the session runs: an open session not renewed for long died with its replica.
    alive_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    frames: Mapped[int] = mapped_column(Integer, default=0)
    frames_dropped: Mapped[int] = mapped_column(Integer, default=0)
    # The start command's chime: a speaker's proof of play for the stream names this audio.
    chime_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
