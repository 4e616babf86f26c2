"""Broadcasts that wait for a second person's approval before anything is sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class ApprovalRequest(Base):
    """A disaster broadcast to more than one district or the whole city, as requested, with its
    audio already transcoded and stored. Approval turns it into a broadcast; until then nothing
    exists that a publisher, a sweeper or a speaker coming online could act on."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        UniqueConstraint("city_id", "idempotency_scope", "idempotency_key"),
        Index("ix_approval_requests_city_state", "city_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    category: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default="live")
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    # As requested: {"all": bool, "district_ids": [...], "village_ids": [...]}.
    target: Mapped[dict[str, object]] = mapped_column(JSON)
    audio_sha256: Mapped[dict[str, str]] = mapped_column(JSON)
    source_sha256: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
    expires_in_s: Mapped[int | None] = mapped_column(Integer, default=None)
    requested_by: Mapped[str] = mapped_column(String(120))
    requested_user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Not approved by then: it lapses and is never sent.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(120), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    decision_note: Mapped[str | None] = mapped_column(String(300), default=None)
    broadcast_id: Mapped[str | None] = mapped_column(String(32), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # Whose key it is: a key is one person's (``sending.idempotency_scope``), never the city's.
    idempotency_scope: Mapped[str] = mapped_column(String(64), default="", server_default="")
