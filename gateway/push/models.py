"""The browsers subscribed to a village's notices (`push_subscriptions`) and the push outbox
(`push_messages`: one row per message to one subscription, its state and its attempts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class PushSubscription(Base):
    """One browser's subscription (RFC 8030), made anonymously from the residents' page.

    The endpoint is a capability URL: whoever holds it can push to the browser, so it is never
    logged; ``endpoint_sha256`` makes it unique without indexing a long text."""

    __tablename__ = "push_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    village_id: Mapped[int] = mapped_column(
        ForeignKey("villages.id", ondelete="CASCADE"), index=True
    )
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    endpoint: Mapped[str] = mapped_column(Text)
    endpoint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The browser's keys (RFC 8291), base64url as the browser gave them.
    p256dh: Mapped[str] = mapped_column(String(100))
    auth: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PushMessage(Base):
    """One notification to one subscription. What it is for is named by ``reference_kind`` and
    ``reference_id`` (a broadcast, a broadcast's fallback...), once per subscription: the same
    reference enqueued again adds nothing. Every change goes through `gateway.push.service`,
    compared and set on ``version`` so two replicas never both move it."""

    __tablename__ = "push_messages"
    __table_args__ = (
        Index("ix_push_messages_due", "status", "next_attempt_at"),
        Index("ix_push_messages_reference", "reference_kind", "reference_id"),
        UniqueConstraint("subscription_id", "reference_kind", "reference_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    village_id: Mapped[int] = mapped_column(
        ForeignKey("villages.id", ondelete="CASCADE"), index=True
    )
    # None once the subscription is gone (the push service answered 404 or 410).
    subscription_id: Mapped[str | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="SET NULL"), index=True
    )
    reference_kind: Mapped[str] = mapped_column(String(32))
    reference_id: Mapped[str] = mapped_column(String(64))
    # The JSON the browser decrypts: title, body, url, broadcast_id, category.
    payload: Mapped[str] = mapped_column(Text)
    urgency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Not sent by then, it is not sent at all (the push service's TTL counts from each send).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # While sending: the worker holding it, and until when; past that another may claim it.
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
