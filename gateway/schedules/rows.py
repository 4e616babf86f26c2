"""What a schedule row stands for: its recurrence rule, its target and the broadcast request an
occurrence makes; loading one by id and saving it against a concurrent change."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from gateway.auth import Principal
from gateway.broadcasts.service import BroadcastRequest, carried, kept_texts, texts_of
from gateway.errors import Conflict, NotFound
from gateway.schedules.models import Schedule
from gateway.schedules.quiet import city_zone, parse_hhmm
from gateway.schedules.recurrence import WEEKDAYS, Kind, Recurrence, Weekday
from wire.contract import Category


def target_of(request: BroadcastRequest) -> dict[str, object]:
    """The target a schedule keeps (an area as given, beside the villages it covered)."""
    return {
        "all": request.all_villages,
        "district_ids": sorted(set(request.district_ids)),
        "village_ids": sorted(set(request.village_ids)),
        **carried(request.extra_target),
        **kept_texts(request),
    }


def rule_columns(rule: Recurrence) -> dict[str, object]:
    return {
        "kind": rule.kind,
        "first_at": rule.first_at,
        "repeat_count": rule.repeat_count,
        "repeat_every_min": rule.repeat_every_min,
        "daily_at": rule.daily_at.strftime("%H:%M") if rule.daily_at else None,
        "weekdays": list(rule.weekdays) if rule.kind == "daily" else [],
        "until": rule.until,
    }


def rule_of(schedule: Schedule) -> Recurrence:
    weekdays: tuple[Weekday, ...] = tuple(w for w in WEEKDAYS if w in schedule.weekdays)
    return Recurrence(
        kind=cast(Kind, schedule.kind),
        first_at=schedule.first_at,
        zone=city_zone(schedule.timezone),
        repeat_count=schedule.repeat_count,
        repeat_every_min=schedule.repeat_every_min,
        daily_at=parse_hhmm(schedule.daily_at) if schedule.daily_at else None,
        weekdays=weekdays or WEEKDAYS,
        until=schedule.until,
    )


def target_ids(target: dict[str, object], key: str) -> list[int]:
    values = target.get(key) or []
    assert isinstance(values, list)
    return [int(v) for v in values]


def request_of(
    schedule: Schedule,
    *,
    idempotency_key: str | None,
    principal: Principal | None = None,
    occurrence_at: datetime | None = None,
) -> BroadcastRequest:
    target = schedule.target
    extra: dict[str, object] = {"schedule_id": schedule.id, **carried(target)}
    if occurrence_at is not None:
        extra["schedule_occurrence_at"] = occurrence_at.isoformat()
    return BroadcastRequest(
        category=Category(schedule.category),
        title=schedule.title,
        text=schedule.text,
        all_villages=bool(target.get("all")),
        district_ids=tuple(target_ids(target, "district_ids")),
        village_ids=tuple(target_ids(target, "village_ids")),
        expires_in_s=schedule.expires_in_s,
        idempotency_key=idempotency_key,
        created_by=schedule.created_by,
        repeat=schedule.speak_twice,
        mode=schedule.mode,
        principal=principal,
        extra_target=extra,
        texts=texts_of(target),
    )


def _missing(schedule_id: str) -> NotFound:
    return NotFound(
        "schedule_not_found",
        ko="예약 방송을 찾을 수 없습니다.",
        en=f"Schedule {schedule_id!r} does not exist.",
    )


async def load_schedule(
    session: AsyncSession, city_id: int, schedule_id: str, *, for_update: bool = False
) -> Schedule:
    schedule = (
        await session.get(
            Schedule, schedule_id, with_for_update=for_update, populate_existing=for_update
        )
        if len(schedule_id) == 32
        else None
    )
    if schedule is None or schedule.city_id != city_id:
        raise _missing(schedule_id)
    return schedule


def _busy() -> Conflict:
    return Conflict(
        "schedule_busy",
        ko="예약이 방금 다른 곳에서 바뀌었거나 방송되었습니다. 다시 확인해 주세요.",
        en="The schedule changed or fired at the same moment; read it again and retry.",
    )


async def flush_versioned(session: AsyncSession) -> None:
    try:
        await session.flush()
    except StaleDataError:
        raise _busy() from None
