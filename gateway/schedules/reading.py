"""Reading schedules, and who may see or act on one: a schedule is seen by those who send its
category to an area it reaches, and changed by its maker or someone who could have made it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.auth import Principal, Role
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.schemas import BroadcastMode
from gateway.deps import Runtime
from gateway.errors import Forbidden
from gateway.places import service as places
from gateway.places.models import City
from gateway.schedules.models import Schedule, ScheduleOccurrence
from gateway.schedules.rows import load_schedule, request_of, rule_of, target_ids
from gateway.schedules.schemas import (
    Occurrence,
    OccurrenceState,
    SchedulePage,
    ScheduleRead,
    ScheduleState,
    ScheduleTarget,
)
from gateway.schedules.schemas import Recurrence as RecurrenceRead
from gateway.sending.cancelling import authorize_cancel
from gateway.sending.rules import CancelPath
from wire.contract import Category

_IN_CHUNK: Final = 500


async def _occurrences(
    session: AsyncSession, schedule_ids: Sequence[str]
) -> dict[str, list[ScheduleOccurrence]]:
    found: dict[str, list[ScheduleOccurrence]] = {sid: [] for sid in schedule_ids}
    for start in range(0, len(schedule_ids), _IN_CHUNK):
        rows = await session.scalars(
            select(ScheduleOccurrence)
            .where(ScheduleOccurrence.schedule_id.in_(schedule_ids[start : start + _IN_CHUNK]))
            .order_by(ScheduleOccurrence.occurrence_at, ScheduleOccurrence.id)
        )
        for row in rows:
            found[row.schedule_id].append(row)
    return found


def _to_read(schedule: Schedule, occurrences: Sequence[ScheduleOccurrence]) -> ScheduleRead:
    rule = rule_of(schedule)
    target = schedule.target
    return ScheduleRead(
        id=schedule.id,
        state=cast(ScheduleState, schedule.state),
        origin=cast(Literal["api", "quiet_hours", "cap_effective"], schedule.origin),
        category=Category(schedule.category),
        mode=cast(BroadcastMode, schedule.mode),
        title=schedule.title,
        text=schedule.text,
        source=cast(Literal["recording", "text"], schedule.source_kind),
        template_id=schedule.template_id,
        template_values=schedule.template_values,
        target=ScheduleTarget(
            all=bool(target.get("all")),
            district_ids=target_ids(target, "district_ids"),
            village_ids=target_ids(target, "village_ids"),
            area=cast(dict[str, object] | None, target.get("area")),
        ),
        expires_in_s=schedule.expires_in_s,
        duration_ms=schedule.duration_ms,
        timezone=schedule.timezone,
        send_at=schedule.first_at,
        recurrence=RecurrenceRead(
            kind=rule.kind,
            repeat_count=schedule.repeat_count,
            repeat_every_min=schedule.repeat_every_min,
            daily_at=schedule.daily_at,
            weekdays=list(rule.weekdays) if rule.kind == "daily" else [],
            until=schedule.until,
            description=rule.describe(),
        ),
        next_occurrence_at=schedule.next_occurrence_at,
        next_fire_at=schedule.next_fire_at,
        fired_count=schedule.fired_count,
        skipped_count=schedule.skipped_count,
        broadcast_ids=[o.broadcast_id for o in occurrences if o.broadcast_id is not None],
        occurrences=[
            Occurrence(
                occurrence_at=o.occurrence_at,
                state=cast(OccurrenceState, o.state),
                reason=o.reason,
                broadcast_id=o.broadcast_id,
                handled_at=o.handled_at,
            )
            for o in occurrences
        ],
        created_by=schedule.created_by,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        cancelled_at=schedule.cancelled_at,
        paused_at=schedule.paused_at if schedule.state == "paused" else None,
        paused_reason=schedule.paused_reason if schedule.state == "paused" else None,
    )


async def read_schedule(session: AsyncSession, schedule: Schedule) -> ScheduleRead:
    occurrences = await _occurrences(session, [schedule.id])
    return _to_read(schedule, occurrences[schedule.id])


# Who sees every schedule; everyone else sees those of the categories their role sends that
# reach their area, as they could act on them.
_SEE_ALL: Final = frozenset({Role.CITY_ADMIN, Role.AUDITOR})


async def _reaches_area(session: AsyncSession, principal: Principal, schedule: Schedule) -> bool:
    """Whether the schedule's target (resolved only when it fires) reaches the caller's area."""
    if principal.role in scopes.CITY_WIDE:
        return True
    target = schedule.target
    if target.get("all"):
        return bool(principal.district_ids or principal.village_ids)
    districts = set(target_ids(target, "district_ids"))
    if districts & principal.district_ids:
        return True
    if districts and principal.village_ids:
        own = await places.village_codes(session, sorted(principal.village_ids))
        if any(district in districts for _code, _name, district in own.values()):
            return True
    return await scopes.touches(session, principal, target_ids(target, "village_ids"))


async def _visible(session: AsyncSession, principal: Principal, schedule: Schedule) -> bool:
    if principal.role in _SEE_ALL:
        return True
    if Category(schedule.category) not in principal.may_send:
        return False
    return await _reaches_area(session, principal, schedule)


async def may_see(session: AsyncSession, principal: Principal, schedule: Schedule) -> bool:
    """Whether ``principal`` sees the schedule (and may hear its recording)."""
    return await _visible(session, principal, schedule)


def _not_yours() -> Forbidden:
    return Forbidden(
        "outside_scope",
        ko="담당 지역이나 담당 방송 종류의 예약이 아닙니다.",
        en="This schedule is outside your area or the categories you send.",
    )


async def authorize_act(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    schedule: Schedule,
    principal: Principal,
    path: CancelPath,
) -> None:
    """May this person edit or cancel the schedule as it stands (its category, its target)?
    The cancel rule (``rules.CANCEL``): its maker may cancel it; anyone else, and whoever edits
    it, needs the rights to send it (so whoever may change it could have made it), and someone
    else an area at least as wide as its maker's."""

    async def rights() -> None:
        await broadcasts.authorize_request(
            session,
            runtime,
            city,
            request_of(schedule, idempotency_key=None, principal=principal),
        )

    await authorize_cancel(
        session, runtime.settings, principal, path, sender=schedule.created_by, rights=rights
    )


async def get_schedule(
    session: AsyncSession, city: City, schedule_id: str, *, principal: Principal
) -> ScheduleRead:
    schedule = await load_schedule(session, city.id, schedule_id)
    if not await _visible(session, principal, schedule):
        raise _not_yours()
    return await read_schedule(session, schedule)


async def list_schedules(
    session: AsyncSession,
    city: City,
    *,
    state: str | None,
    limit: int,
    offset: int,
    principal: Principal,
) -> SchedulePage:
    query = select(Schedule).where(Schedule.city_id == city.id)
    if state is not None:
        query = query.where(Schedule.state == state)
    ordered = query.order_by(Schedule.created_at.desc(), Schedule.id)
    if principal.role in _SEE_ALL:
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(await session.scalars(ordered.limit(limit).offset(offset)))
    else:
        # The category is a column; the target is JSON resolved when it fires, so the area is
        # checked here, like the broadcasts a scoped caller lists.
        categories = sorted(c.value for c in principal.may_send)
        visible = [
            s
            for s in await session.scalars(ordered.where(Schedule.category.in_(categories)))
            if await _reaches_area(session, principal, s)
        ]
        total, rows = len(visible), visible[offset : offset + limit]
    occurrences = await _occurrences(session, [s.id for s in rows])
    return SchedulePage(
        items=[_to_read(s, occurrences[s.id]) for s in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
