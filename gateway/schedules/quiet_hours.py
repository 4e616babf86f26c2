"""Which quiet hours hold a broadcast: the city's window, or a district's own, for every
district the target reaches; and the refusal a held broadcast gets when it cannot wait."""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import Conflict
from gateway.places import service as places
from gateway.places.models import City
from gateway.schedules.models import DistrictQuietHours
from gateway.schedules.quiet import (
    Quiet,
    QuietWindow,
    city_zone,
    describe_local,
    parse_window,
    quiet_at,
)
from gateway.settings import Settings


async def _district_windows(session: AsyncSession, city_id: int) -> dict[int, str]:
    rows = await session.execute(
        select(DistrictQuietHours.district_id, DistrictQuietHours.window).where(
            DistrictQuietHours.city_id == city_id
        )
    )
    return dict(rows.tuples().all())


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


def quiet_refusal(quiet: Quiet, zone: tzinfo, *, scheduled: datetime | None) -> Conflict:
    windows = ", ".join(w.label.replace("-", "~") for w in quiet.windows)
    when_ko = f"예약 시각 {describe_local(scheduled, zone)}은(는) " if scheduled else "지금은 "
    when_en = f"{scheduled.isoformat()} falls in" if scheduled else "It is now"
    if quiet.ends_at is None:
        return Conflict(
            "quiet_hours",
            ko=f"{when_ko}조용한 시간({windows})이며 대상 지역은 하루 종일 조용한 시간입니다. "
            "재난 방송만 보낼 수 있습니다.",
            en=f"{when_en} quiet hours ({windows}) that cover the whole day for this target; "
            "only disaster alerts are sent.",
        )
    ends = describe_local(quiet.ends_at, zone)
    return Conflict(
        "quiet_hours",
        ko=f"{when_ko}조용한 시간({windows})입니다. 재난 방송이 아니면 조용한 시간이 끝나는 "
        f"{ends} 이후에 보내 주세요.",
        en=f"{when_en} quiet hours ({windows}); only disaster alerts are sent now. "
        f"Quiet hours end at {quiet.ends_at.isoformat()}.",
    )
