"""Request and response shapes of the schedule and quiet-hours APIs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.broadcasts.schemas import BroadcastMode
from gateway.schedules.recurrence import Kind, Weekday
from wire.contract import Category

ScheduleState = Literal["active", "paused", "completed", "cancelled"]
OccurrenceState = Literal["fired", "skipped", "failed"]
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class ScheduleTarget(BaseModel):
    all: bool
    district_ids: list[int]
    village_ids: list[int]
    area: dict[str, object] | None = Field(
        None, description="The area it was given, which made `village_ids` (see POST /broadcasts)"
    )


class Recurrence(BaseModel):
    kind: Kind = Field(description="once; repeat (N times every M minutes); daily (until a date)")
    repeat_count: int
    repeat_every_min: int | None
    daily_at: str | None = Field(description="HH:MM, local time (daily only)")
    weekdays: list[Weekday] = Field(description="The days a daily recurrence fires on")
    until: date | None = Field(description="The last day a daily recurrence fires (inclusive)")
    description: str = Field(description="The recurrence in words, in Korean")


class Occurrence(BaseModel):
    occurrence_at: datetime = Field(description="The time it was due (before any deferral)")
    state: OccurrenceState
    reason: str | None = Field(
        description="skipped: missed (the gateway was down past the grace window), "
        "quiet_hours, rate_limited_user / rate_limited_village (the hour's share was spent "
        "when it fell due), owner_suspended / owner_removed (its creator's account was "
        "suspended or is gone), category_not_allowed / outside_scope (its creator may no "
        "longer send it: role or area changed since it was made), or paused (it fell due "
        "while the schedule was paused), or expired (a CAP alert held past its <expires>); "
        "failed: the error code (e.g. district_not_found)"
    )
    broadcast_id: str | None
    handled_at: datetime


class ScheduleRead(BaseModel):
    id: str
    state: ScheduleState = Field(
        description="active; paused (nothing fires until someone with rights resumes it); "
        "completed; cancelled"
    )
    origin: Literal["api", "quiet_hours", "cap_effective"] = Field(
        description="quiet_hours: a broadcast deferred to the end of quiet hours; "
        "cap_effective: a CAP alert held until its <effective> (or <onset>) time"
    )
    category: Category
    mode: BroadcastMode = Field(description="What each broadcast it sends will be")
    title: str | None
    text: str | None
    source: Literal["recording", "text"]
    template_id: int | None
    template_values: dict[str, str] | None
    target: ScheduleTarget
    expires_in_s: int | None
    duration_ms: int
    timezone: str
    send_at: datetime = Field(description="The first occurrence")
    recurrence: Recurrence
    next_occurrence_at: datetime | None = Field(
        description="When the next occurrence is due (None once nothing is left)"
    )
    next_fire_at: datetime | None = Field(
        description="When it will actually be sent: later than next_occurrence_at while quiet "
        "hours defer it"
    )
    fired_count: int
    skipped_count: int
    broadcast_ids: list[str] = Field(description="The broadcasts it created, oldest first")
    occurrences: list[Occurrence]
    created_by: str
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None
    paused_at: datetime | None = Field(default=None, description="When it was paused")
    paused_reason: str | None = Field(
        default=None,
        description="Why it is paused: owner_suspended (its creator's account was suspended), "
        "owner_removed, owner_rights_changed (its creator may no longer send it: their role or "
        "area changed since it was made)",
    )


class SchedulePage(BaseModel):
    items: list[ScheduleRead]
    total: int
    limit: int
    offset: int


class ScheduleUpdate(BaseModel):
    """What may change before a schedule first fires; fields left out keep their value. Anything
    else (its category, its audio) is refused (422), never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    send_at: datetime | None = Field(
        default=None, description="ISO 8601; a time without offset is local (Asia/Seoul)"
    )
    repeat_count: int | None = Field(default=None, ge=1, le=100)
    repeat_every_min: int | None = Field(default=None, ge=1, le=1440)
    daily_at: str | None = Field(default=None, pattern=HHMM)
    weekdays: list[Weekday] | None = None
    until: date | None = None
    title: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, max_length=5000)
    values: dict[str, str | int | float] | None = Field(
        default=None, description="New placeholder values for a schedule made from a template"
    )
    all_villages: bool | None = None
    district_ids: list[int] | None = None
    village_ids: list[int] | None = None
    expires_in_s: int | None = Field(default=None, ge=30, le=7 * 86400)


class QuietHoursWindow(BaseModel):
    window: str = Field(
        description='"HH:MM-HH:MM" in local time (wraps past midnight), or "off"',
        examples=["21:00-07:00", "off"],
    )


class DistrictQuietHoursRead(BaseModel):
    district_id: int
    window: str
    updated_by: str
    updated_at: datetime


class QuietHoursRead(BaseModel):
    window: str = Field(description="The city's window (GATEWAY_QUIET_HOURS)")
    policy: Literal["defer", "refuse"] = Field(
        description="What happens to a broadcast other than a disaster alert in quiet hours"
    )
    timezone: str
    quiet_now: bool = Field(description="Whether the city's window is in force now")
    districts: list[DistrictQuietHoursRead] = Field(description="Districts with their own window")
