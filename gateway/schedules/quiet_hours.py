"""Which quiet hours hold a broadcast: the city's window, or a district's own, for every
district the target reaches; the refusal a held broadcast gets when it cannot wait; and
reading and setting a city's and its districts' quiet hours."""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal, Role
from gateway.errors import Conflict, Forbidden, InvalidRequest
from gateway.places import service as places
from gateway.places.models import City
from gateway.schedules.models import DistrictQuietHours
from gateway.schedules.quiet import (
    Quiet,
    QuietWindow,
    city_zone,
    clock_ko,
    parse_window,
    quiet_at,
    window_ko,
)
from gateway.schedules.schemas import DistrictQuietHoursRead, QuietHoursRead
from gateway.settings import Settings


async def _district_windows(session: AsyncSession, city_id: int) -> dict[int, str]:
    rows = await session.execute(
        select(DistrictQuietHours.district_id, DistrictQuietHours.window).where(
            DistrictQuietHours.city_id == city_id
        )
    )
    return dict(rows.tuples().all())


async def district_window(
    session: AsyncSession, settings: Settings, city_id: int, district_id: int
) -> QuietWindow | None:
    """The quiet hours a district keeps: its own window, else the city's (None: none)."""
    spec = (await _district_windows(session, city_id)).get(district_id)
    return parse_window(settings.quiet_hours if spec is None else spec)


async def _target_districts(session: AsyncSession, target: places.ResolvedTarget) -> set[int]:
    districts = set(target.district_ids)
    if not target.all:
        whole = set(target.district_ids)
        villages = await places.village_codes(session, target.village_ids)
        districts |= {d for _code, _name, d in villages.values() if d not in whole}
    return districts


async def quiet_for_target(
    session: AsyncSession,
    settings: Settings,
    city: City,
    target: places.ResolvedTarget,
    at: datetime,
) -> Quiet | None:
    """Whether ``at`` falls in the quiet hours of any district the target reaches (each has the
    city's window unless it has its own), and when all of them are over."""
    default = parse_window(settings.quiet_hours)
    overrides = await _district_windows(session, city.id)
    districts = await _target_districts(session, target)
    specs = {overrides.get(d) for d in districts} if districts else {None}
    windows: set[QuietWindow] = set()
    for spec in specs:
        window = default if spec is None else parse_window(spec)
        if window is not None:
            windows.add(window)
    return quiet_at(sorted(windows, key=lambda w: (w.start, w.end)), at, city_zone(city.timezone))


def _moment_ko(moment: datetime, zone: tzinfo) -> str:
    """``1월 2일 오전 7:00``, as the phone page says the end of a hold."""
    local = moment.astimezone(zone)
    return f"{local.month}월 {local.day}일 {clock_ko(local.time())}"


def quiet_refusal(quiet: Quiet, zone: tzinfo, *, scheduled: datetime | None) -> Conflict:
    windows = ", ".join(window_ko(w) for w in quiet.windows)
    windows_en = ", ".join(w.label for w in quiet.windows)
    when_ko = f"예약 시각 {_moment_ko(scheduled, zone)}은(는) " if scheduled else "지금은 "
    when_en = f"{scheduled.isoformat()} falls in" if scheduled else "It is now"
    if quiet.ends_at is None:
        return Conflict(
            "quiet_hours",
            ko=f"{when_ko}방송 금지 시간입니다. 대상 지역은 하루 종일 방송 금지 시간이라 "
            "재난 방송만 보낼 수 있습니다.",
            en=f"{when_en} quiet hours ({windows_en}) that cover the whole day for this target; "
            "only disaster alerts are sent.",
        )
    ends = _moment_ko(quiet.ends_at, zone)
    return Conflict(
        "quiet_hours",
        ko=f"{when_ko}방송 금지 시간입니다. {windows}에는 재난 방송만 보낼 수 있습니다. "
        f"{ends} 이후에 보내 주세요.",
        en=f"{when_en} quiet hours ({windows_en}); only disaster alerts are sent now. "
        f"Quiet hours end at {quiet.ends_at.isoformat()}.",
    )


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
        ko="담당 읍·면·동의 방송 금지 시간만 바꿀 수 있습니다.",
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
            ko='방송 금지 시간은 "21:00-07:00"처럼 시작-끝 시각으로 쓰거나 "off"로 꺼 주세요.',
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
