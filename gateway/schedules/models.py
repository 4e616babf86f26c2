"""Tables for schedules, what each of their occurrences became, and districts' quiet hours."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class Schedule(Base):
    """A broadcast to send later, once or recurring, with its audio already stored.

    ``next_occurrence_at`` is the nominal time of the next occurrence (it names the broadcast it
    creates, so two replicas can never create two); ``next_fire_at`` is when it is due, later
    than the nominal time only while quiet hours defer it. Both are None once nothing is left.
    Every change bumps ``version``, so an edit and a firing can never both win.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("city_id", "idempotency_scope", "idempotency_key"),
        Index("ix_schedules_due", "state", "next_fire_at"),
        Index("ix_schedules_city_created", "city_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="active")
    # api: asked for; quiet_hours: a broadcast deferred to the end of quiet hours.
    origin: Mapped[str] = mapped_column(String(16), default="api")
    category: Mapped[str] = mapped_column(String(32))
    # live | test | exercise: what each broadcast it sends will be.
    mode: Mapped[str] = mapped_column(String(16), default="live", server_default="live")
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    # recording: an upload, transcoded when scheduled; text: spoken when scheduled.
    source_kind: Mapped[str] = mapped_column(String(16))
    speak_twice: Mapped[bool] = mapped_column(Boolean, default=False)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("templates.id", ondelete="SET NULL"), default=None
    )
    template_values: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    # {"all": bool, "district_ids": [...], "village_ids": [...]}, resolved when each occurrence
    # fires, so villages added or moved in between are reached.
    target: Mapped[dict[str, object]] = mapped_column(JSON)
    expires_in_s: Mapped[int | None] = mapped_column(Integer, default=None)
    source_sha256: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
    audio_sha256: Mapped[dict[str, str]] = mapped_column(JSON)

    kind: Mapped[str] = mapped_column(String(16))  # once | repeat | daily
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    repeat_count: Mapped[int] = mapped_column(Integer, default=1)
    repeat_every_min: Mapped[int | None] = mapped_column(Integer, default=None)
    daily_at: Mapped[str | None] = mapped_column(String(5), default=None)
    weekdays: Mapped[list[str]] = mapped_column(JSON, default=list)
    until: Mapped[date | None] = mapped_column(Date, default=None)
    timezone: Mapped[str] = mapped_column(String(64))

    next_occurrence_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)

    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(100), default=None)
    # Why and when it was paused: owner_suspended (its creator's account was suspended),
    # owner_removed, owner_rights_changed (its creator may no longer send it).
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    paused_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # Whose key it is: a key is one person's (``sending.idempotency_scope``), never the city's.
    idempotency_scope: Mapped[str] = mapped_column(String(64), default="", server_default="")
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class ScheduleOccurrence(Base):
    """What one occurrence became: a broadcast, or skipped/failed with the reason."""

    __tablename__ = "schedule_occurrences"
    # The last line of defence against a double fire: one row per nominal occurrence.
    __table_args__ = (UniqueConstraint("schedule_id", "occurrence_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    occurrence_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))  # fired | skipped | failed
    # skipped: missed (after downtime), quiet_hours, owner_suspended, owner_removed, paused,
    # category_not_allowed / outside_scope (the creator's rights as they are when it falls due);
    # failed: the error code.
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    broadcast_id: Mapped[str | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), default=None
    )
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DistrictQuietHours(Base):
    """A district's own quiet-hours window, instead of the city's (GATEWAY_QUIET_HOURS)."""

    __tablename__ = "district_quiet_hours"

    district_id: Mapped[int] = mapped_column(
        ForeignKey("districts.id", ondelete="CASCADE"), primary_key=True
    )
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    window: Mapped[str] = mapped_column(String(16))  # "HH:MM-HH:MM" or "off"
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
