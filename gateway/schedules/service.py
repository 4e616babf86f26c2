"""Schedules: making, editing and cancelling them.

A schedule keeps its audio from the moment it is made (a recording is transcoded then, typed
text spoken then, so bad input fails at once) and resolves its targets each time it fires
(``gateway.schedules.firing``). Reading and access rules live in ``gateway.schedules.reading``,
quiet hours in ``gateway.schedules.quiet_hours``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Final, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import ratelimits
from gateway.auth import Principal
from gateway.broadcasts import audio_store
from gateway.broadcasts.service import BroadcastRequest
from gateway.deps import Runtime
from gateway.errors import Conflict, InvalidRequest
from gateway.places.models import City
from gateway.schedules.models import Schedule
from gateway.schedules.quiet import city_zone, parse_hhmm
from gateway.schedules.reading import authorize_act, read_schedule
from gateway.schedules.recurrence import Recurrence, Timing, build_recurrence
from gateway.schedules.rows import (
    flush_versioned,
    load_schedule,
    request_of,
    rule_columns,
    rule_of,
    target_ids,
    target_of,
)
from gateway.schedules.schemas import ScheduleRead, ScheduleUpdate
from gateway.sending import service as sending
from gateway.sending.rules import CancelPath, Defer, Refuse, Replay, Send
from gateway.sending.rules import Path as SendPath
from gateway.templates import service as templates
from wire import contract


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


async def _language_sets(
    session: AsyncSession, runtime: Runtime, city: City, request: BroadcastRequest
) -> list[tuple[str, ...]] | None:
    """The language sets typed text is read in for the villages it targets now; a village
    whose set has no audio when it fires (changed since) hears the first one
    (``gateway.broadcasts.language_audio``)."""
    if not request.texts:
        return None
    target = await sending.resolve(session, city, request)
    return await audio_store.language_sets(session, runtime, request, target.village_ids)


async def create_schedule(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    upload: Path | None,
    timing: Timing,
    *,
    composed: templates.Composed | None = None,
    origin: Literal["api", "quiet_hours", "cap_effective"] = "api",
) -> Created:
    """Check everything cheap first (time, text, then the send rules), transcode or speak with
    no transaction open, check the rules again and write the schedule."""
    now = runtime.clock.now()
    zone = city_zone(city.timezone)
    rule = build_recurrence(timing, now=now, zone=zone)
    source_sha256 = await audio_store.source_sha256_of(runtime, request, upload)
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
    sets = await _language_sets(session, runtime, city, request) if upload is None else None
    # Release the transaction (and its pooled connection) while the audio is made.
    await session.commit()
    prepared = await audio_store.prepare_audio(runtime, request, upload, source_sha256, sets=sets)
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
        target=target_of(request),
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
        **rule_columns(rule),
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
    current = rule_of(schedule)
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
    await authorize_act(session, runtime, city, schedule, principal, CancelPath.SCHEDULE_EDIT)
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
    texts: dict[str, str] | None = None  # refilled with a template's new values
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
        texts = rendered.texts
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
        request_of(schedule, idempotency_key=None, principal=principal),
        title=title,
        text=text,
        all_villages=body.all_villages
        if body.all_villages is not None
        else bool(target.get("all")),
        district_ids=tuple(
            body.district_ids
            if body.district_ids is not None
            else target_ids(target, "district_ids")
        ),
        village_ids=tuple(
            body.village_ids if body.village_ids is not None else target_ids(target, "village_ids")
        ),
        expires_in_s=body.expires_in_s if "expires_in_s" in given else schedule.expires_in_s,
        # The area it was given stays on record while its villages are not changed.
        extra_target=(
            {"area": target["area"]}
            if "area" in target and not any(f in given for f in _TARGET_FIELDS)
            else {}
        ),
    )
    if texts is not None:
        request = replace(request, texts=texts)
    if any(f in given for f in _TIMING_FIELDS):
        rule = build_recurrence(_merged_timing(schedule, body, zone), now=now, zone=zone)
        for column, value in rule_columns(rule).items():
            setattr(schedule, column, value)
    rule = rule_of(schedule)
    # The send rules, as for a new schedule (rights as the editor, limits as its maker).
    fire_at = await _planned_fire(
        session, runtime, city, _send_request(request, rule, schedule.source_sha256, None)
    )
    assert not isinstance(fire_at, Schedule)  # no key: nothing to replay

    retargeted = request.texts and target_of(request) != schedule.target
    if schedule.source_kind == "text" and (text != schedule.text or retargeted):
        sets = await _language_sets(session, runtime, city, request)
        audio = await audio_store.store_audio_for(session, runtime, request, None, sets=sets)
        schedule.source_sha256 = audio.source_sha256
        schedule.duration_ms = audio.duration_ms
        schedule.audio_sha256 = dict(audio.sha256)
    schedule.text, schedule.title = text, title
    schedule.template_id, schedule.template_values = template_id, values
    schedule.target = target_of(request)
    schedule.expires_in_s = request.expires_in_s
    schedule.next_occurrence_at = rule.first_at
    schedule.next_fire_at = fire_at
    schedule.updated_at = now
    await flush_versioned(session)
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
    await authorize_act(session, runtime, city, schedule, principal, CancelPath.SCHEDULE_CANCEL)
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
    await flush_versioned(session)
    return await read_schedule(session, schedule)
