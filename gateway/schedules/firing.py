"""Handling a schedule's due occurrence: claiming the schedule, then firing, skipping or
deferring the occurrence and moving the schedule on.

Each occurrence becomes a broadcast through the send use case (``gateway.sending``), checked
against the send rules as its maker's send, with the idempotency key
``schedule:{id}:{occurrence}``, written in the same transaction that moves the schedule on, so
an occurrence can never fire twice, whichever replica claims it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.service import Started, StoredAudio, ends_at, replace_on_send
from gateway.deps import Runtime
from gateway.errors import MaeulError
from gateway.places import service as places
from gateway.places.models import City
from gateway.schedules.models import Schedule, ScheduleOccurrence
from gateway.schedules.quiet_hours import quiet_for_target
from gateway.schedules.recurrence import Recurrence
from gateway.schedules.rows import request_of, rule_of
from gateway.sending import service as sending
from gateway.sending.rules import Defer, Refuse, Replay, Send
from gateway.sending.rules import Path as SendPath
from gateway.settings import Settings
from gateway.users import standing
from wire.contract import Category

Outcome = Literal["fired", "skipped", "failed", "deferred", "raced"]


def occurrence_key(schedule_id: str, occurrence_at: datetime) -> str:
    """The Idempotency-Key of the broadcast an occurrence creates: one per occurrence, ever."""
    return f"schedule:{schedule_id}:{occurrence_at.isoformat()}"


async def claim_due(
    session: AsyncSession,
    city_id: int,
    now: datetime,
    *,
    postgres: bool,
    passed: Collection[str] = (),
) -> Schedule | None:
    """Claim one due schedule for this transaction, or None when nothing is due.

    PostgreSQL locks the row (``FOR UPDATE SKIP LOCKED``): other replicas pass over it until
    this transaction ends, by which time it is no longer due. SQLite has no row locks: a
    compare-and-set on ``version`` claims it, and whoever loses sees 0 rows and moves on.
    """
    query = (
        select(Schedule.id, Schedule.version)
        .where(
            Schedule.city_id == city_id,
            Schedule.state == "active",
            Schedule.next_fire_at <= now,
        )
        .order_by(Schedule.next_fire_at, Schedule.id)
    )
    if passed:
        query = query.where(Schedule.id.not_in(list(passed)))
    if postgres:
        row = (await session.execute(query.limit(1).with_for_update(skip_locked=True))).first()
        if row is None:
            return None
        return await session.get(Schedule, row[0], populate_existing=True)
    for schedule_id, version in (await session.execute(query.limit(20))).tuples().all():
        claimed = await session.execute(
            update(Schedule)
            .where(
                Schedule.id == schedule_id,
                Schedule.version == version,
                Schedule.state == "active",
                Schedule.next_fire_at <= now,
            )
            .values(version=Schedule.version + 1)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) == 1:
            return await session.get(Schedule, schedule_id, populate_existing=True)
    return None


def record_occurrence(
    session: AsyncSession,
    schedule: Schedule,
    occurrence_at: datetime,
    state: Literal["fired", "skipped", "failed"],
    now: datetime,
    *,
    reason: str | None = None,
    broadcast_id: str | None = None,
) -> None:
    session.add(
        ScheduleOccurrence(
            schedule_id=schedule.id,
            occurrence_at=occurrence_at,
            state=state,
            reason=reason,
            broadcast_id=broadcast_id,
            handled_at=now,
        )
    )
    if state == "fired":
        schedule.fired_count += 1
    else:
        schedule.skipped_count += 1


def _advance(schedule: Schedule, rule: Recurrence, occurrence_at: datetime, now: datetime) -> None:
    upcoming = rule.next_after(occurrence_at)
    schedule.next_occurrence_at = upcoming
    schedule.next_fire_at = upcoming
    schedule.updated_at = now
    if upcoming is None:
        schedule.state = "completed"


# Why an occurrence is refused when its maker may no longer send it (``scopes``); the schedule
# is then paused, so it does not go on skipping every time (resumed by someone with rights).
_RIGHTS_LOST: Final = frozenset({"category_not_allowed", "outside_scope"})
OWNER_RIGHTS_CHANGED: Final = "owner_rights_changed"


def _pause_for_rights(schedule: Schedule, now: datetime) -> None:
    schedule.state = "paused"
    schedule.paused_at, schedule.paused_reason = now, OWNER_RIGHTS_CHANGED


async def handle_due(
    session: AsyncSession, runtime: Runtime, city: City, schedule: Schedule, now: datetime
) -> Outcome:
    """Settle a claimed schedule's due occurrence: fire it, skip it, or defer it past quiet
    hours; then move the schedule on. The caller commits (or rolls back on "raced")."""
    settings = runtime.settings
    rule = rule_of(schedule)
    assert schedule.next_occurrence_at is not None
    assert schedule.next_fire_at is not None
    occurrence, fire_at = schedule.next_occurrence_at, schedule.next_fire_at
    # Occurrences that fell due together (after downtime, or held by quiet hours) are sent
    # once: the latest goes, the earlier ones are recorded as skipped.
    while (upcoming := rule.next_after(occurrence)) is not None and upcoming <= now:
        held = fire_at > occurrence
        record_occurrence(
            session,
            schedule,
            occurrence,
            "skipped",
            now,
            reason="quiet_hours" if held else "missed",
        )
        occurrence, fire_at = upcoming, max(fire_at, upcoming)
    if (now - fire_at).total_seconds() > settings.schedule_grace_s:
        record_occurrence(session, schedule, occurrence, "skipped", now, reason="missed")
        _advance(schedule, rule, occurrence, now)
        return "skipped"

    key = occurrence_key(schedule.id, occurrence)
    request = request_of(schedule, idempotency_key=key, occurrence_at=occurrence)
    ends = ends_at(request.extra_target)
    if ends is not None:
        if ends <= now:
            # A CAP alert held past its <expires> is stale: it never plays.
            record_occurrence(session, schedule, occurrence, "skipped", now, reason="expired")
            _advance(schedule, rule, occurrence, now)
            return "skipped"
        request = replace(request, expires_in_s=max(1, int((ends - now).total_seconds())))
    # Every rule is checked now, as the maker's send: their rights as they stand today (a role
    # or an area taken away since it was made stops it); the bootstrap token's is not checked.
    owner = await standing.current_principal(session, settings, schedule.created_by)
    wanted = sending.SendRequest(
        path=SendPath.SCHEDULE_FIRE,
        broadcast=request,
        principal=owner,
        source_sha256=schedule.source_sha256,
        at=now,
        scope=sending.GATEWAY_SCOPE,
    )
    try:
        decision = await sending.plan(session, runtime, city, wanted)
    except MaeulError as exc:
        record_occurrence(session, schedule, occurrence, "failed", now, reason=exc.code)
        _advance(schedule, rule, occurrence, now)
        return "failed"
    if isinstance(decision, Defer):
        schedule.next_occurrence_at = occurrence
        schedule.next_fire_at = decision.until
        schedule.updated_at = now
        return "deferred"
    if isinstance(decision, Refuse):
        record_occurrence(session, schedule, occurrence, "skipped", now, reason=decision.code)
        _advance(schedule, rule, occurrence, now)
        if decision.code in _RIGHTS_LOST and schedule.state == "active":
            _pause_for_rights(schedule, now)
        return "skipped"
    target: places.ResolvedTarget | None = None
    if isinstance(decision, Replay):
        assert isinstance(decision.found, Broadcast)
        broadcast = decision.found
    else:
        assert isinstance(decision, Send)  # a schedule cannot wait for a second person
        audio = StoredAudio(
            source_sha256=schedule.source_sha256,
            duration_ms=schedule.duration_ms,
            sha256=schedule.audio_sha256,
        )
        try:
            started = await sending.execute(session, runtime, city, wanted, decision, audio)
        except MaeulError as exc:
            record_occurrence(session, schedule, occurrence, "failed", now, reason=exc.code)
            _advance(schedule, rule, occurrence, now)
            return "failed"
        assert isinstance(started, Started)
        if started.replayed:
            # Another replica wrote this occurrence first.
            return "raced"
        broadcast, target = started.broadcast, decision.target
        await replace_on_send(session, runtime, city, broadcast)
    record_occurrence(session, schedule, occurrence, "fired", now, broadcast_id=broadcast.id)
    _advance(schedule, rule, occurrence, now)
    if target is not None:
        await _defer_next(session, settings, city, schedule, target)
    return "fired"


async def _defer_next(
    session: AsyncSession,
    settings: Settings,
    city: City,
    schedule: Schedule,
    target: places.ResolvedTarget,
) -> None:
    """Show now when the next occurrence will go if quiet hours hold it (checked again when it
    falls due, as windows may change in between)."""
    upcoming = schedule.next_occurrence_at
    if upcoming is None or schedule.category == Category.DISASTER.value:
        return
    quiet = await quiet_for_target(session, settings, city, target, upcoming)
    if quiet is not None and quiet.ends_at is not None and settings.quiet_hours_policy == "defer":
        schedule.next_fire_at = quiet.ends_at
