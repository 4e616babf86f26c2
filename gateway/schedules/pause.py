"""Pausing schedules whose creator may no longer send, and resuming them by someone with rights.

A schedule goes on sending in its creator's name long after it was made. When that person is
suspended, what they scheduled must stop with them: `pause_owned_by` runs in the suspension's
transaction and pauses every active schedule they made (a paused schedule is never claimed).
`skip_if_owner_inactive` is the second line of defence, when an occurrence falls due: it covers
a firing that raced the suspension and accounts suspended before pausing existed.

Reinstating the account resumes nothing: a paused schedule waits for `resume_schedule`, called
by someone who may act on it (its creator once active again, or an officer with rights over its
category and area). Occurrences that fell due while it was paused are skipped, never sent late.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal
from gateway.deps import Runtime
from gateway.errors import Conflict
from gateway.places.models import City
from gateway.schedules.firing import record_occurrence
from gateway.schedules.models import Schedule
from gateway.schedules.reading import authorize_act, read_schedule
from gateway.schedules.rows import flush_versioned, load_schedule, rule_of
from gateway.schedules.schemas import ScheduleRead
from gateway.sending.rules import CancelPath
from gateway.users import standing

OWNER_SUSPENDED: Final = "owner_suspended"
OWNER_REMOVED: Final = "owner_removed"
# Accounts whose schedules go on: people in good standing and the deployment's own token.
_MAY_SEND: Final = frozenset({"active", "system"})


async def pause_owned_by(
    session: AsyncSession, city_id: int, actor: str, *, reason: str, now: datetime
) -> int:
    """Pause every active schedule ``actor`` made; how many were paused.

    One UPDATE that bumps ``version``: a replica firing one of them at this moment loses its
    compare-and-set (SQLite) or, on PostgreSQL, holds the row lock until it commits, after which
    the row is paused unless that firing completed it."""
    result = await session.execute(
        update(Schedule)
        .where(
            Schedule.city_id == city_id,
            Schedule.created_by == actor,
            Schedule.state == "active",
        )
        .values(
            state="paused",
            paused_at=now,
            paused_reason=reason,
            updated_at=now,
            version=Schedule.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def skip_if_owner_inactive(
    session: AsyncSession, schedule: Schedule, now: datetime
) -> str | None:
    """For a claimed, due schedule: when its creator's account is suspended or gone, record the
    due occurrence as skipped (``owner_suspended`` / ``owner_removed``) and pause the schedule.
    Returns the outcome ("skipped"), or None when the occurrence may be handled as usual."""
    state = await standing.account_state(session, schedule.created_by)
    if state in _MAY_SEND:
        return None
    reason = OWNER_SUSPENDED if state == "suspended" else OWNER_REMOVED
    occurrence = schedule.next_occurrence_at
    assert occurrence is not None
    record_occurrence(session, schedule, occurrence, "skipped", now, reason=reason)
    upcoming = rule_of(schedule).next_after(occurrence)
    schedule.next_occurrence_at = upcoming
    schedule.next_fire_at = upcoming
    schedule.updated_at = now
    if upcoming is None:
        schedule.state = "completed"
    else:
        schedule.state, schedule.paused_at, schedule.paused_reason = "paused", now, reason
    return "skipped"


def _not_paused(schedule: Schedule) -> Conflict:
    return Conflict(
        "schedule_not_paused",
        ko="일시 중지된 예약이 아니어서 재개할 수 없습니다.",
        en=f"Schedule {schedule.id} is not paused (it is {schedule.state}).",
    )


def _owner_suspended() -> Conflict:
    return Conflict(
        OWNER_SUSPENDED,
        ko="예약을 만든 사람의 계정이 정지되었거나 없어서 재개할 수 없습니다. 계정을 다시 "
        "활성화한 뒤 재개하거나, 예약을 취소하고 새로 만들어 주세요.",
        en="The account that made this schedule is suspended or gone; reinstate it first, or "
        "cancel the schedule and make a new one.",
    )


async def resume_schedule(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    schedule_id: str,
    *,
    principal: Principal,
) -> ScheduleRead:
    """Make a paused schedule active again. The caller must be allowed to act on it as it
    stands, and its creator must be active again (a schedule sends in their name)."""
    schedule = await load_schedule(session, city.id, schedule_id, for_update=True)
    await authorize_act(session, runtime, city, schedule, principal, CancelPath.SCHEDULE_RESUME)
    if schedule.state != "paused":
        raise _not_paused(schedule)
    if await standing.account_state(session, schedule.created_by) not in _MAY_SEND:
        raise _owner_suspended()
    now = runtime.clock.now()
    rule = rule_of(schedule)
    occurrence, fire_at = schedule.next_occurrence_at, schedule.next_fire_at
    # What fell due while it was paused is not sent late: skipped, to the present.
    while occurrence is not None and fire_at is not None and fire_at <= now:
        record_occurrence(session, schedule, occurrence, "skipped", now, reason="paused")
        occurrence = rule.next_after(occurrence)
        fire_at = occurrence
    schedule.next_occurrence_at, schedule.next_fire_at = occurrence, fire_at
    schedule.state = "active" if occurrence is not None else "completed"
    schedule.paused_at = schedule.paused_reason = None
    schedule.updated_at = now
    await flush_versioned(session)
    return await read_schedule(session, schedule)
