"""HTTP routes for scheduled broadcasts (make, list, read, edit, cancel) and quiet hours."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile

from gateway.auth import Anyone, Principal, Role, Sender, allow
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.router import (
    AREA_ERRORS,
    AREA_FORM,
    CONTENT_ERRORS,
    _spill,
    _upload_within_limit,
)
from gateway.broadcasts.schemas import BroadcastMode
from gateway.deps import CityDep, NowDep, RuntimeDep, SessionDep
from gateway.error_catalog import documented
from gateway.places import geography
from gateway.schedules import pause, quiet_hours, reading, service
from gateway.schedules.quiet import parse_hhmm
from gateway.schedules.recurrence import Timing, Weekday
from gateway.schedules.schemas import (
    HHMM,
    DistrictQuietHoursRead,
    QuietHoursRead,
    SchedulePage,
    ScheduleRead,
    ScheduleState,
    ScheduleUpdate,
)
from gateway.schedules.schemas import QuietHoursWindow as QuietHoursBody
from gateway.templates import service as templates
from wire.contract import Category

router = APIRouter(tags=["schedules"])
quiet_router = APIRouter(tags=["quiet hours"])

QuietKeeper = Annotated[Principal, allow(Role.CITY_ADMIN, Role.DISTRICT_OFFICER)]

_TIME_ERRORS: Final = (
    "send_at_in_past",
    "missing_send_at",
    "recurrence_without_end",
    "invalid_recurrence",
    "recurrence_never_fires",
    "until_too_far",
)


@router.post(
    "/schedules",
    status_code=201,
    operation_id="create_schedule",
    dependencies=[Depends(_upload_within_limit)],
    responses={
        200: {"description": "A repeat of an earlier request with the same key"},
        **documented(
            "template_not_found",
            "district_not_found",
            "village_not_found",
            "quiet_hours",
            "approval_required",
            *_TIME_ERRORS,
            "repetition_over_rate_limit",
            "idempotency_key_reused",
            *CONTENT_ERRORS,
            *AREA_ERRORS,
            "rate_limited_user",
            "rate_limited_village",
            notes={
                "quiet_hours": "The first occurrence falls in them (policy refuse).",
                "rate_limited_user": "Checked like a send (never for disaster alerts); each "
                "occurrence is checked again when it fires.",
                "rate_limited_village": "Checked like a send, and again when each fires.",
            },
        ),
    },
)
async def create_schedule(
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
    response: Response,
    category: Annotated[Category, Form()],
    file: Annotated[
        UploadFile | None,
        File(description="A recording, transcoded now; omit to speak `text` or a template"),
    ] = None,
    text: Annotated[str | None, Form(max_length=5000)] = None,
    template_id: Annotated[int | None, Form(description="Fill this template instead")] = None,
    values: Annotated[
        str | None, Form(description='The template\'s values, a JSON object: {"날짜": "5일"}')
    ] = None,
    repeat: Annotated[bool, Form(description="Speak typed text twice")] = False,
    mode: Annotated[
        BroadcastMode,
        Form(
            description="live, or test / exercise: each broadcast it sends is one (see POST "
            "/broadcasts)"
        ),
    ] = "live",
    title: Annotated[str | None, Form(max_length=200)] = None,
    all_villages: Annotated[bool, Form()] = False,
    district_ids: Annotated[list[int] | None, Form()] = None,
    village_ids: Annotated[list[int] | None, Form()] = None,
    area: Annotated[str | None, Form(max_length=200_000, description=AREA_FORM)] = None,
    expires_in_s: Annotated[int | None, Form(ge=30, le=7 * 86400)] = None,
    send_at: Annotated[
        datetime | None,
        Form(
            description="ISO 8601; a time without offset is local (Asia/Seoul). The first "
            "occurrence, or the start of a daily recurrence (default: now)"
        ),
    ] = None,
    repeat_count: Annotated[
        int | None, Form(ge=1, le=100, description="Send N times in all...")
    ] = None,
    repeat_every_min: Annotated[
        int | None, Form(ge=1, le=1440, description="...every M minutes")
    ] = None,
    daily_at: Annotated[
        str | None, Form(pattern=HHMM, description="Every day at HH:MM, local time")
    ] = None,
    weekdays: Annotated[
        list[Weekday] | None, Form(description="Only on these days (with daily_at)")
    ] = None,
    until: Annotated[
        date | None, Form(description="The last day of a daily recurrence (required with it)")
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ScheduleRead:
    """Schedule a broadcast: once at `send_at`, `repeat_count` times every `repeat_every_min`
    minutes, or every day (`daily_at`, optionally only on `weekdays`) until `until`. The audio
    is made and checked now; targets are resolved each time it fires."""
    composed = await templates.compose(
        session, city, text=text, title=title, template_id=template_id, values=values
    )
    by_area = await geography.target_area(
        session,
        city.id,
        area,
        all_villages=all_villages,
        district_ids=district_ids or (),
        village_ids=village_ids or (),
    )
    request = broadcasts.BroadcastRequest(
        category=category,
        title=composed.title,
        text=composed.text,
        all_villages=all_villages,
        district_ids=tuple(district_ids or ()),
        village_ids=by_area.village_ids if by_area else tuple(village_ids or ()),
        expires_in_s=expires_in_s,
        idempotency_key=idempotency_key,
        created_by=user.actor,
        repeat=repeat,
        mode=mode,
        principal=user,
        extra_target=by_area.recorded if by_area else {},
        texts=composed.texts,
    )
    timing = Timing(
        send_at=send_at,
        repeat_count=repeat_count,
        repeat_every_min=repeat_every_min,
        daily_at=parse_hhmm(daily_at) if daily_at else None,
        weekdays=tuple(weekdays or ()),
        until=until,
    )
    settings = runtime.settings
    path = (
        await _spill(file, settings.data_dir / "uploads", settings.max_upload_bytes)
        if file is not None
        else None
    )
    try:
        created = await service.create_schedule(
            session, runtime, city, request, path, timing, composed=composed
        )
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    if created.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return created.schedule


@router.get("/schedules", operation_id="list_schedules")
async def list_schedules(
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    state: ScheduleState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SchedulePage:
    """Newest first, each with its next fire time and the broadcasts it created. The city
    administrator and the auditor see every schedule; others those of the categories their
    role sends that reach their area."""
    return await reading.list_schedules(
        session, city, state=state, limit=limit, offset=offset, principal=user
    )


@router.get(
    "/schedules/{schedule_id}",
    operation_id="get_schedule",
    responses=documented(
        "outside_scope",
        "schedule_not_found",
        notes={"outside_scope": "Another area, or a category the role does not send."},
    ),
)
async def get_schedule(
    schedule_id: str, session: SessionDep, user: Anyone, city: CityDep
) -> ScheduleRead:
    return await reading.get_schedule(session, city, schedule_id, principal=user)


@router.patch(
    "/schedules/{schedule_id}",
    operation_id="update_schedule",
    responses=documented(
        "outside_scope",
        "category_not_allowed",
        "schedule_not_found",
        "schedule_already_fired",
        "schedule_cancelled",
        "schedule_paused",
        "schedule_busy",
        "quiet_hours",
        "approval_required",
        *_TIME_ERRORS,
        *CONTENT_ERRORS,
    ),
)
async def update_schedule(
    schedule_id: str,
    body: ScheduleUpdate,
    session: SessionDep,
    user: Sender,
    city: CityDep,
    runtime: RuntimeDep,
) -> ScheduleRead:
    """Change the time, text or targets before it first fires; fields left out are kept."""
    return await service.update_schedule(session, runtime, city, schedule_id, body, principal=user)


@router.post(
    "/schedules/{schedule_id}/cancel",
    operation_id="cancel_schedule",
    responses=documented(
        "outside_scope",
        "category_not_allowed",
        "schedule_not_found",
        "schedule_already_fired",
        notes={"schedule_already_fired": "Every occurrence fired."},
    ),
)
async def cancel_schedule(
    schedule_id: str, session: SessionDep, user: Sender, city: CityDep, runtime: RuntimeDep
) -> ScheduleRead:
    """Nothing more fires. Broadcasts it already created are left alone (cancel those as
    broadcasts). Cancelling twice is harmless."""
    return await service.cancel_schedule(session, runtime, city, schedule_id, principal=user)


@router.post(
    "/schedules/{schedule_id}/resume",
    operation_id="resume_schedule",
    responses=documented(
        "outside_scope",
        "category_not_allowed",
        "schedule_not_found",
        "schedule_not_paused",
        "owner_suspended",
        "schedule_busy",
    ),
)
async def resume_schedule(
    schedule_id: str, session: SessionDep, user: Sender, city: CityDep, runtime: RuntimeDep
) -> ScheduleRead:
    """Resume a paused schedule (paused when its creator was suspended; reinstating the account
    resumes nothing by itself). Occurrences that fell due meanwhile are skipped (`paused`)."""
    return await pause.resume_schedule(session, runtime, city, schedule_id, principal=user)


@quiet_router.get("/quiet-hours", operation_id="get_quiet_hours")
async def get_quiet_hours(
    session: SessionDep, _user: Anyone, city: CityDep, runtime: RuntimeDep, now: NowDep
) -> QuietHoursRead:
    """The city's quiet hours and policy, and the districts that keep their own window."""
    return await quiet_hours.describe_quiet_hours(session, runtime.settings, city, now=now)


@quiet_router.put(
    "/quiet-hours/districts/{district_id}",
    operation_id="set_district_quiet_hours",
    responses=documented("outside_scope", "district_not_found", "invalid_quiet_hours"),
)
async def set_district_quiet_hours(
    district_id: int,
    body: QuietHoursBody,
    session: SessionDep,
    user: QuietKeeper,
    city: CityDep,
    now: NowDep,
) -> DistrictQuietHoursRead:
    """Give a district its own window ("22:00-06:00"), or none ("off")."""
    return await quiet_hours.set_district_quiet_hours(
        session, city, district_id, body.window, principal=user, now=now
    )


@quiet_router.delete(
    "/quiet-hours/districts/{district_id}",
    status_code=204,
    operation_id="clear_district_quiet_hours",
    responses=documented("outside_scope", "district_not_found"),
)
async def clear_district_quiet_hours(
    district_id: int, session: SessionDep, user: QuietKeeper, city: CityDep
) -> None:
    """The district follows the city's quiet hours again."""
    await quiet_hours.clear_district_quiet_hours(session, city, district_id, principal=user)
