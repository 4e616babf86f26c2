"""Tables of the fallback: each city's rule per category, one job per broadcast and village,
and one row per resident and channel a broadcast went to besides its speakers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class FallbackRule(Base):
    """A city's own rule for one category; a category without a row follows the defaults
    (`gateway.fallback.rules`)."""

    __tablename__ = "fallback_rules"

    city_id: Mapped[int] = mapped_column(
        ForeignKey("cities.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    after_s: Mapped[int] = mapped_column(Integer)
    channels: Mapped[list[str]] = mapped_column(JSON)
    all_at_once: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    drills: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))


class FallbackJob(Base):
    """One village of one broadcast: due when the rule's time has passed (at once when the
    village had no speaker online at the start, or the rule sends at once); claimed with a
    compare-and-set on ``version``, so exactly one replica decides it."""

    __tablename__ = "fallback_jobs"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "village_id"),
        Index("ix_fallback_jobs_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id", ondelete="CASCADE"))
    # waiting -> notified | not_needed | cancelled
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    # Why it is due when it is: offline (no speaker online at the start), all_at_once, or
    # after_rule (the rule's time); once decided, why phones were or were not used.
    reason: Mapped[str] = mapped_column(String(32))
    channels: Mapped[list[str]] = mapped_column(JSON)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=0)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ChannelDelivery(Base):
    """A broadcast told to one resident on one channel (its own counts beside the speakers'):
    at most one per broadcast, village, resident and channel. Its state follows the message's
    (an SMS's state is its ``sms_messages`` row's); ``skipped`` rows name why (consent
    withdrawn since the resident was chosen)."""

    __tablename__ = "broadcast_channel_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "village_id", "resident_id", "channel"),
        Index("ix_broadcast_channel_deliveries_broadcast", "broadcast_id", "village_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id", ondelete="CASCADE"))
    # Kept as a plain id: the record stays when the resident is erased.
    resident_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    # The SMS (``sms_messages.id``) that carries it.
    message_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
