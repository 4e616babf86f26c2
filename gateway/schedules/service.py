"""Schedules: making, editing and cancelling them; quiet hours; and handling a due occurrence.

A schedule keeps its audio from the moment it is made (a recording is transcoded then, typed
text spoken then, so bad input fails at once) and resolves its targets each time it fires.
Each occurrence becomes a broadcast through the send use case (``gateway.sending``), checked
against the send rules as its maker's send, with the idempotency key
``schedule:{id}:{occurrence}``, written in the same transaction that moves the schedule on, so
an occurrence can never fire twice, whichever replica claims it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Final, Literal, cast

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from gateway import ratelimits, scopes
from gateway.auth import Principal, Role
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.schemas import BroadcastMode
from gateway.broadcasts.service import BroadcastRequest, Started, StoredAudio
from gateway.deps import Runtime
from gateway.errors import Conflict, Forbidden, InvalidRequest, MaeulError, NotFound
from gateway.places import service as places
from gateway.places.models import City
from gateway.schedules.models import DistrictQuietHours, Schedule, ScheduleOccurrence
from gateway.schedules.quiet import city_zone, parse_hhmm, parse_window
from gateway.schedules.quiet_hours import quiet_for_target
from gateway.schedules.recurrence import (
    WEEKDAYS,
    Kind,
    Recurrence,
    Timing,
    Weekday,
    build_recurrence,
)
from gateway.schedules.schemas import (
    DistrictQuietHoursRead,
    Occurrence,
    OccurrenceState,
    QuietHoursRead,
    SchedulePage,
    ScheduleRead,
    ScheduleState,
    ScheduleTarget,
    ScheduleUpdate,
)
from gateway.schedules.schemas import Recurrence as RecurrenceRead
from gateway.sending import service as sending
from gateway.sending.cancelling import authorize_cancel
from gateway.sending.rules import CancelPath, Defer, Refuse, Replay, Send
from gateway.sending.rules import Path as SendPath
from gateway.settings import Settings
from gateway.templates import service as templates
from gateway.users import service as users
from wire import contract
from wire.contract import Category

Outcome = Literal["fired", "skipped", "failed", "deferred", "raced"]
_IN_CHUNK: Final = 500


# --------------------------------------------------------------------------------------------
# Quiet hours


async def describe_quiet_hours(
    session: AsyncSession, settings: Settings, city: City, *, now: datetime
) -> QuietHoursRead:
    rows = await session.scalars(
        select(DistrictQuietHours)
        .where(DistrictQuietHours.city_id == city.id)
        .order_by(DistrictQuietHours.district_id)
    )
    window = parse_window(settings.quiet_hours)
    zone = city_zone(city.timezone)
    return QuietHoursRead(
        window=settings.quiet_hours,
        policy=settings.quiet_hours_policy,
        timezone=city.timezone,
        quiet_now=window is not None and window.contains(now, zone),
        districts=[
            DistrictQuietHoursRead(
                district_id=r.district_id,
                window=r.window,
                updated_by=r.updated_by,
                updated_at=r.updated_at,
            )
            for r in rows
        ],
    )


def _may_manage_district(principal: Principal, district_id: int) -> None:
    if principal.role is Role.CITY_ADMIN:
        return
    if principal.role is Role.DISTRICT_OFFICER and district_id in principal.district_ids:
        return
    raise Forbidden(
        "outside_scope",
        ko="담당 읍·면·동의 조용한 시간만 바꿀 수 있습니다.",
        en="You may change the quiet hours of your own district only.",
    )


async def set_district_quiet_hours(
    session: AsyncSession,
    city: City,
    district_id: int,
    spec: str,
    *,
    principal: Principal,
    now: datetime,
) -> DistrictQuietHoursRead:
    _may_manage_district(principal, district_id)
    await places.load_district(session, city.id, district_id)
    try:
        window = parse_window(spec)
    except ValueError:
        raise InvalidRequest(
            "invalid_quiet_hours",
            ko='조용한 시간은 "21:00-07:00"처럼 시작-끝 시각으로 쓰거나 "off"로 꺼 주세요.',
            en='Quiet hours are "HH:MM-HH:MM" (e.g. "21:00-07:00") or "off".',
        ) from None
    label = "off" if window is None else window.label
    row = await session.get(DistrictQuietHours, district_id, with_for_update=True)
    if row is None:
        row = DistrictQuietHours(
            district_id=district_id,
            city_id=city.id,
            window=label,
            updated_by=principal.actor,
            updated_at=now,
        )
        session.add(row)
    else:
        row.window, row.updated_by, row.updated_at = label, principal.actor, now
    await session.flush()
    return DistrictQuietHoursRead(
        district_id=district_id, window=label, updated_by=row.updated_by, updated_at=now
    )


async def clear_district_quiet_hours(
    session: AsyncSession, city: City, district_id: int, *, principal: Principal
) -> None:
    """The district follows the city's quiet hours again."""
    _may_manage_district(principal, district_id)
    await places.load_district(session, city.id, district_id)
    row = await session.get(DistrictQuietHours, district_id)
    if row is not None:
        await session.delete(row)
        await session.flush()


# --------------------------------------------------------------------------------------------
# Making a schedule


@dataclass(frozen=True)
class Created:
    schedule: ScheduleRead
    replayed: bool


def _fingerprint(request: BroadcastRequest, source_sha256: str, rule: Recurrence) -> str:
    body = {
        "request": request.fingerprint(source_sha256),
        "kind": rule.kind,
        "first_at": rule.first_at.isoformat(),
        "repeat_count": rule.repeat_count,
        "repeat_every_min": rule.repeat_every_min,
        "daily_at": rule.daily_at.strftime("%H:%M") if rule.daily_at else None,
        "weekdays": list(rule.weekdays),
        "until": rule.until.isoformat() if rule.until else None,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _key_reused() -> InvalidRequest:
    return InvalidRequest(
        "idempotency_key_reused",
        ko="같은 Idempotency-Key로 다른 내용의 예약 요청이 이미 있었습니다.",
        en="This Idempotency-Key was already used for a different schedule request.",
    )


def _send_request(
    request: BroadcastRequest, rule: Recurrence, source_sha256: str, request_hash: str | None
) -> sending.SendRequest:
    return sending.SendRequest(
        path=SendPath.SCHEDULE,
        broadcast=request,
        principal=request.principal,
        source_sha256=source_sha256,
        at=rule.first_at,
        scope=sending.idempotency_scope(request.principal),
        schedule_hash=request_hash,
    )


async def _planned_fire(
    session: AsyncSession, runtime: Runtime, city: City, wanted: sending.SendRequest
) -> datetime | Schedule:
    """When the first occurrence goes, by the send rules: at its time, or at the end of quiet
    hours (defer); or the schedule an earlier request with the same key made. Refusals raise.
    Making a schedule writes no broadcast, so the limits' counts are not locked."""
    decision = await sending.plan(session, runtime, city, wanted, lock=False)
    if isinstance(decision, Refuse):
        if decision.code == "idempotency_key_reused":
            raise _key_reused()
        raise decision.error
    if isinstance(decision, Replay):
        assert isinstance(decision.found, Schedule)
        return decision.found
    if isinstance(decision, Defer):
        return decision.until
    assert isinstance(decision, Send)  # a schedule cannot wait for a second person
    return wanted.at


async def create_schedule(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    upload: Path | None,
    timing: Timing,
    *,
    composed: templates.Composed | None = None,
    origin: Literal["api", "quiet_hours"] = "api",
) -> Created:
    """Check everything cheap first (time, text, then the send rules), transcode or speak with
    no transaction open, check the rules again and write the schedule."""
    now = runtime.clock.now()
    zone = city_zone(city.timezone)
    rule = build_recurrence(timing, now=now, zone=zone)
    source_sha256 = await broadcasts.source_sha256_of(runtime, request, upload)
    request_hash = _fingerprint(request, source_sha256, rule)
    wanted = _send_request(request, rule, source_sha256, request_hash)
    fire_at = await _planned_fire(session, runtime, city, wanted)
    if isinstance(fire_at, Schedule):
        return Created(await read_schedule(session, fire_at), replayed=True)
    if origin == "api" and request.principal is not None and request.principal.user_id is not None:
        ratelimits.check_repetition(
            runtime.settings,
            request.category,
            _sends_in_an_hour(rule),
            role=request.principal.role,
        )
    # Release the transaction (and its pooled connection) while the audio is made.
    await session.commit()
    prepared = await broadcasts.prepare_audio(runtime, request, upload, source_sha256)
    fire_at = await _planned_fire(session, runtime, city, wanted)
    if isinstance(fire_at, Schedule):
        return Created(await read_schedule(session, fire_at), replayed=True)
    audio = await prepared.store(session, runtime.clock.now())
    key = request.idempotency_key
    schedule = Schedule(
        id=contract.new_id(),
        city_id=city.id,
        state="active",
        origin=origin,
        category=request.category.value,
        mode=request.mode,
        title=request.title,
        text=request.text,
        source_kind="text" if upload is None else "recording",
        speak_twice=request.repeat,
        template_id=composed.template_id if composed else None,
        template_values=composed.values if composed else None,
        target=_target_of(request),
        expires_in_s=request.expires_in_s,
        source_sha256=audio.source_sha256,
        duration_ms=audio.duration_ms,
        audio_sha256=dict(audio.sha256),
        timezone=city.timezone,
        next_occurrence_at=rule.first_at,
        next_fire_at=fire_at,
        fired_count=0,
        skipped_count=0,
        created_by=request.created_by,
        created_at=now,
        updated_at=now,
        idempotency_key=key,
        idempotency_scope=wanted.scope,
        request_hash=request_hash,
        **_rule_columns(rule),
    )
    try:
        # A savepoint: losing a race on the key undoes this insert, not the request's work.
        async with session.begin_nested():
            session.add(schedule)
            await session.flush()
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the other one won.
        winner = await _planned_fire(session, runtime, city, wanted)
        if not isinstance(winner, Schedule):
            raise
        return Created(await read_schedule(session, winner), replayed=True)
    return Created(await read_schedule(session, schedule), replayed=False)


def _sends_in_an_hour(rule: Recurrence) -> int:
    """The most occurrences that fall within any one rate-limit window."""
    if rule.kind != "repeat" or rule.repeat_every_min is None:
        return 1  # once, or at most one a day
    every = timedelta(minutes=rule.repeat_every_min)
    return min(rule.repeat_count, -(-ratelimits.WINDOW // every))


def _target_of(request: BroadcastRequest) -> dict[str, object]:
    return {
        "all": request.all_villages,
        "district_ids": sorted(set(request.district_ids)),
        "village_ids": sorted(set(request.village_ids)),
    }


def _rule_columns(rule: Recurrence) -> dict[str, object]:
    return {
        "kind": rule.kind,
        "first_at": rule.first_at,
        "repeat_count": rule.repeat_count,
        "repeat_every_min": rule.repeat_every_min,
        "daily_at": rule.daily_at.strftime("%H:%M") if rule.daily_at else None,
        "weekdays": list(rule.weekdays) if rule.kind == "daily" else [],
        "until": rule.until,
    }


def _rule_of(schedule: Schedule) -> Recurrence:
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


def _ids(target: dict[str, object], key: str) -> list[int]:
    values = target.get(key) or []
    assert isinstance(values, list)
    return [int(v) for v in values]


def _request_of(
    schedule: Schedule,
    *,
    idempotency_key: str | None,
    principal: Principal | None = None,
    occurrence_at: datetime | None = None,
) -> BroadcastRequest:
    target = schedule.target
    extra: dict[str, object] = {"schedule_id": schedule.id}
    if occurrence_at is not None:
        extra["schedule_occurrence_at"] = occurrence_at.isoformat()
    return BroadcastRequest(
        category=Category(schedule.category),
        title=schedule.title,
        text=schedule.text,
        all_villages=bool(target.get("all")),
        district_ids=tuple(_ids(target, "district_ids")),
        village_ids=tuple(_ids(target, "village_ids")),
        expires_in_s=schedule.expires_in_s,
        idempotency_key=idempotency_key,
        created_by=schedule.created_by,
        repeat=schedule.speak_twice,
        mode=schedule.mode,
        principal=principal,
        extra_target=extra,
    )


def occurrence_key(schedule_id: str, occurrence_at: datetime) -> str:
    """The Idempotency-Key of the broadcast an occurrence creates: one per occurrence, ever."""
    return f"schedule:{schedule_id}:{occurrence_at.isoformat()}"


# --------------------------------------------------------------------------------------------
# Reading


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
    rule = _rule_of(schedule)
    target = schedule.target
    return ScheduleRead(
        id=schedule.id,
        state=cast(ScheduleState, schedule.state),
        origin=cast(Literal["api", "quiet_hours"], schedule.origin),
        category=Category(schedule.category),
        mode=cast(BroadcastMode, schedule.mode),
        title=schedule.title,
        text=schedule.text,
        source=cast(Literal["recording", "text"], schedule.source_kind),
        template_id=schedule.template_id,
        template_values=schedule.template_values,
        target=ScheduleTarget(
            all=bool(target.get("all")),
            district_ids=_ids(target, "district_ids"),
            village_ids=_ids(target, "village_ids"),
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
    districts = set(_ids(target, "district_ids"))
    if districts & principal.district_ids:
        return True
    if districts and principal.village_ids:
        own = await places.village_codes(session, sorted(principal.village_ids))
        if any(district in districts for _code, _name, district in own.values()):
            return True
    return await scopes.touches(session, principal, _ids(target, "village_ids"))


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


async def _authorize_act(
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
            _request_of(schedule, idempotency_key=None, principal=principal),
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


# --------------------------------------------------------------------------------------------
# Editing and cancelling


def _already_fired(schedule: Schedule) -> Conflict:
    return Conflict(
        "schedule_already_fired",
        ko="이미 방송이 시작된 예약은 바꿀 수 없습니다. 취소하고 새로 예약해 주세요.",
        en=f"Schedule {schedule.id} has already fired; cancel it and make a new one.",
    )


def _cancelled(schedule: Schedule) -> Conflict:
    return Conflict(
        "schedule_cancelled",
        ko="취소된 예약은 바꿀 수 없습니다.",
        en=f"Schedule {schedule.id} was cancelled.",
    )


def _paused(schedule: Schedule) -> Conflict:
    return Conflict(
        "schedule_paused",
        ko="일시 중지된 예약은 바꿀 수 없습니다. 먼저 재개하거나 취소해 주세요.",
        en=f"Schedule {schedule.id} is paused; resume or cancel it first.",
    )


def _busy() -> Conflict:
    return Conflict(
        "schedule_busy",
        ko="예약이 방금 다른 곳에서 바뀌었거나 방송되었습니다. 다시 확인해 주세요.",
        en="The schedule changed or fired at the same moment; read it again and retry.",
    )


async def _flush_versioned(session: AsyncSession) -> None:
    try:
        await session.flush()
    except StaleDataError:
        raise _busy() from None


_TIMING_FIELDS: Final = (
    "send_at",
    "repeat_count",
    "repeat_every_min",
    "daily_at",
    "weekdays",
    "until",
)
_TARGET_FIELDS: Final = ("all_villages", "district_ids", "village_ids")


def _merged_timing(schedule: Schedule, body: ScheduleUpdate, zone: tzinfo) -> Timing:
    given = body.model_fields_set
    current = _rule_of(schedule)
    daily_at: time | None = current.daily_at
    if "daily_at" in given:
        daily_at = parse_hhmm(body.daily_at) if body.daily_at else None
    daily = daily_at is not None
    return Timing(
        send_at=body.send_at if "send_at" in given else (None if daily else schedule.first_at),
        repeat_count=body.repeat_count
        if "repeat_count" in given
        else (None if daily or current.kind == "once" else schedule.repeat_count),
        repeat_every_min=body.repeat_every_min
        if "repeat_every_min" in given
        else (None if daily else schedule.repeat_every_min),
        daily_at=daily_at,
        weekdays=tuple(body.weekdays or ())
        if "weekdays" in given
        else (current.weekdays if daily else ()),
        until=body.until if "until" in given else (current.until if daily else None),
    )


async def update_schedule(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    schedule_id: str,
    body: ScheduleUpdate,
    *,
    principal: Principal,
) -> ScheduleRead:
    """Change time, text or targets before the first occurrence fires: the caller must be
    allowed to act on the schedule as it is, and to send it as it will be."""
    schedule = await load_schedule(session, city.id, schedule_id, for_update=True)
    await _authorize_act(session, runtime, city, schedule, principal, CancelPath.SCHEDULE_EDIT)
    if schedule.state == "cancelled":
        raise _cancelled(schedule)
    if schedule.state == "paused":
        raise _paused(schedule)
    if schedule.state != "active" or schedule.fired_count or schedule.skipped_count:
        raise _already_fired(schedule)
    given = body.model_fields_set
    now = runtime.clock.now()
    zone = city_zone(city.timezone)

    text, title = schedule.text, schedule.title
    template_id, values = schedule.template_id, schedule.template_values
    if "values" in given:
        if template_id is None:
            raise InvalidRequest(
                "values_without_template",
                ko="템플릿으로 만든 예약이 아니어서 항목 값(values)을 바꿀 수 없습니다.",
                en="This schedule was not made from a template; change its text instead.",
            )
        template = await templates.load_template(session, city.id, template_id)
        rendered = templates.render(template, body.values or {})
        text, values = rendered.text, {k: str(v).strip() for k, v in (body.values or {}).items()}
        title = rendered.title if "title" not in given else body.title
    if "text" in given:
        if "values" in given:
            raise InvalidRequest(
                "text_and_template",
                ko="방송 문구(text)와 템플릿 항목 값(values) 중 하나만 보내 주세요.",
                en="Give either text or template values, not both.",
            )
        if body.text is None and schedule.source_kind == "text":
            raise InvalidRequest(
                "missing_file",
                ko="음성으로 읽을 방송 문구가 필요합니다.",
                en="A schedule of typed text needs its text.",
            )
        text, template_id, values = body.text, None, None
    if "title" in given:
        title = body.title
    target = schedule.target
    request = replace(
        _request_of(schedule, idempotency_key=None, principal=principal),
        title=title,
        text=text,
        all_villages=body.all_villages
        if body.all_villages is not None
        else bool(target.get("all")),
        district_ids=tuple(
            body.district_ids if body.district_ids is not None else _ids(target, "district_ids")
        ),
        village_ids=tuple(
            body.village_ids if body.village_ids is not None else _ids(target, "village_ids")
        ),
        expires_in_s=body.expires_in_s if "expires_in_s" in given else schedule.expires_in_s,
        extra_target={},
    )
    if any(f in given for f in _TIMING_FIELDS):
        rule = build_recurrence(_merged_timing(schedule, body, zone), now=now, zone=zone)
        for column, value in _rule_columns(rule).items():
            setattr(schedule, column, value)
    rule = _rule_of(schedule)
    # The send rules, as for a new schedule (rights as the editor, limits as its maker).
    fire_at = await _planned_fire(
        session, runtime, city, _send_request(request, rule, schedule.source_sha256, None)
    )
    assert not isinstance(fire_at, Schedule)  # no key: nothing to replay

    if schedule.source_kind == "text" and text != schedule.text:
        audio = await broadcasts.store_audio_for(session, runtime, request, None)
        schedule.source_sha256 = audio.source_sha256
        schedule.duration_ms = audio.duration_ms
        schedule.audio_sha256 = dict(audio.sha256)
    schedule.text, schedule.title = text, title
    schedule.template_id, schedule.template_values = template_id, values
    schedule.target = _target_of(request)
    schedule.expires_in_s = request.expires_in_s
    schedule.next_occurrence_at = rule.first_at
    schedule.next_fire_at = fire_at
    schedule.updated_at = now
    await _flush_versioned(session)
    return await read_schedule(session, schedule)


async def cancel_schedule(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    schedule_id: str,
    *,
    principal: Principal,
) -> ScheduleRead:
    """No further occurrence fires. Broadcasts it already created are not touched (cancel them
    as broadcasts). Cancelling twice is harmless."""
    schedule = await load_schedule(session, city.id, schedule_id, for_update=True)
    await _authorize_act(session, runtime, city, schedule, principal, CancelPath.SCHEDULE_CANCEL)
    if schedule.state == "cancelled":
        return await read_schedule(session, schedule)
    if schedule.state not in ("active", "paused"):
        raise Conflict(
            "schedule_already_fired",
            ko="이미 모든 방송을 마친 예약은 취소할 수 없습니다.",
            en=f"Schedule {schedule.id} has already fired every occurrence.",
        )
    now = runtime.clock.now()
    schedule.state = "cancelled"
    schedule.cancelled_at = now
    schedule.cancelled_by = principal.actor
    schedule.next_occurrence_at = None
    schedule.next_fire_at = None
    schedule.updated_at = now
    await _flush_versioned(session)
    return await read_schedule(session, schedule)


# --------------------------------------------------------------------------------------------
# Firing


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


def _record(
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
    rule = _rule_of(schedule)
    assert schedule.next_occurrence_at is not None
    assert schedule.next_fire_at is not None
    occurrence, fire_at = schedule.next_occurrence_at, schedule.next_fire_at
    # Occurrences that fell due together (after downtime, or held by quiet hours) are sent
    # once: the latest goes, the earlier ones are recorded as skipped.
    while (upcoming := rule.next_after(occurrence)) is not None and upcoming <= now:
        held = fire_at > occurrence
        _record(
            session,
            schedule,
            occurrence,
            "skipped",
            now,
            reason="quiet_hours" if held else "missed",
        )
        occurrence, fire_at = upcoming, max(fire_at, upcoming)
    if (now - fire_at).total_seconds() > settings.schedule_grace_s:
        _record(session, schedule, occurrence, "skipped", now, reason="missed")
        _advance(schedule, rule, occurrence, now)
        return "skipped"

    key = occurrence_key(schedule.id, occurrence)
    request = _request_of(schedule, idempotency_key=key, occurrence_at=occurrence)
    # Every rule is checked now, as the maker's send: their rights as they stand today (a role
    # or an area taken away since it was made stops it); the bootstrap token's is not checked.
    owner = await users.current_principal(session, settings, schedule.created_by)
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
        _record(session, schedule, occurrence, "failed", now, reason=exc.code)
        _advance(schedule, rule, occurrence, now)
        return "failed"
    if isinstance(decision, Defer):
        schedule.next_occurrence_at = occurrence
        schedule.next_fire_at = decision.until
        schedule.updated_at = now
        return "deferred"
    if isinstance(decision, Refuse):
        _record(session, schedule, occurrence, "skipped", now, reason=decision.code)
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
            _record(session, schedule, occurrence, "failed", now, reason=exc.code)
            _advance(schedule, rule, occurrence, now)
            return "failed"
        assert isinstance(started, Started)
        if started.replayed:
            # Another replica wrote this occurrence first.
            return "raced"
        broadcast, target = started.broadcast, decision.target
    _record(session, schedule, occurrence, "fired", now, broadcast_id=broadcast.id)
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
