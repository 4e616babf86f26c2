"""The officer alerts table: one row per officer told of a village head's disaster alert."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class OfficerAlert(Base):
    """Written in the transaction that creates the broadcast, so an alert that went out is
    never missing from the officers' console, and one rolled back never appears there."""

    __tablename__ = "officer_alerts"
    __table_args__ = (Index("ix_officer_alerts_inbox", "recipient_id", "acknowledged_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    broadcast_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True
    )
    sent_by: Mapped[str] = mapped_column(String(120))
    # The villages warned, with their names as they were then (the banner's words).
    village_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    village_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
