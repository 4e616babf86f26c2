"""The SMS outbox (`sms_messages`: one row per message, its state and its attempts) and each
city's daily sending budget (`sms_budget_days`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class SmsMessage(Base):
    """One SMS to one phone. The number is sealed (`gateway.sms.service.seal_recipient`), never
    stored plain, and erased once the message is sent or final;
    what the message is for is named by ``reference_kind`` and ``reference_id`` (a resident, a
    broadcast's fallback...). Every change goes through `gateway.sms.service`, compared and set
    on ``version`` so two replicas never both move it."""

    __tablename__ = "sms_messages"
    __table_args__ = (
        Index("ix_sms_messages_due", "status", "next_attempt_at"),
        Index("ix_sms_messages_reference", "reference_kind", "reference_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    reference_kind: Mapped[str] = mapped_column(String(32))
    reference_id: Mapped[str] = mapped_column(String(64))
    to_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    text: Mapped[str] = mapped_column(Text)
    # Erase the text once sent or final (it carries a verification code).
    forget_text: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    parts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Counted against the city's budget for this local day ("YYYY-MM-DD"); None until claimed.
    budget_day: Mapped[str | None] = mapped_column(String(10), default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # While sending: the worker holding it, and until when; past that another may claim it.
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_report: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class SmsBudgetDay(Base):
    """How many message parts a city has sent on one local day."""

    __tablename__ = "sms_budget_days"

    city_id: Mapped[int] = mapped_column(
        ForeignKey("cities.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
