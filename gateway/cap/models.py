"""CAP ingest's rows: the senders allowed to post alerts, the alerts taken in, and the feeds
polled for more."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class CapSender(Base):
    """A CAP ``<sender>`` the city takes alerts from, and the account that posts them: its
    credential (a password or an API key) and its role and area limit what the alerts may
    target and which categories they may be."""

    __tablename__ = "cap_senders"
    __table_args__ = (UniqueConstraint("city_id", "sender"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CapAlert(Base):
    """One CAP alert taken in (its identifier, sender and sent time are the alert), and what it
    made: a broadcast, an approval request, a schedule (quiet hours), or the broadcasts it
    cancelled."""

    __tablename__ = "cap_alerts"
    __table_args__ = (UniqueConstraint("city_id", "sender", "identifier", "sent"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(200))
    identifier: Mapped[str] = mapped_column(String(200))
    # ISO 8601 in UTC: the same instant written with another offset is the same alert.
    sent: Mapped[str] = mapped_column(String(40))
    msg_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    broadcast_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    approval_id: Mapped[str | None] = mapped_column(String(32), default=None)
    schedule_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # The broadcasts an Update or Cancel stopped (what had not played of them).
    cancelled_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The held sends (schedules) it cancelled and the approval requests it withdrew.
    cancelled_schedule_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    withdrawn_approval_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The "sender,identifier,sent" triples the alert references, as given.
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What the answer names again when the same alert comes twice.
    mode: Mapped[str | None] = mapped_column(String(16), default=None)
    category: Mapped[str | None] = mapped_column(String(32), default=None)
    village_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    language: Mapped[str | None] = mapped_column(String(35), default=None)
    # The text of every <info>, by language (the spoken one included), for other languages.
    texts: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CapFeedState(Base):
    """A configured feed's turn: the replica that claims it (compare-and-set on ``version``)
    polls it, and moves ``next_poll_at`` on."""

    __tablename__ = "cap_feed_states"
    __table_args__ = (UniqueConstraint("city_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(1000))
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)


class CapFeedEntry(Base):
    """A feed entry already taken in (or refused): never fetched again."""

    __tablename__ = "cap_feed_entries"
    __table_args__ = (UniqueConstraint("feed_id", "entry_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("cap_feed_states.id", ondelete="CASCADE"))
    # The entry's <id> and <updated>: an entry updated in place is a new one.
    entry_key: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
