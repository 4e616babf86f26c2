"""Places: the deployment's city, broadcast targets, and managing districts and villages."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from audio.speech.languages import validate_languages
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.places.geography import apply_geo, geo_of, geo_values
from gateway.places.models import City, District, Village
from gateway.places.schemas import (
    CityRead,
    DistrictCreate,
    DistrictPage,
    DistrictRead,
    DistrictUpdate,
    VillageCreate,
    VillagePage,
    VillageRead,
    VillageUpdate,
)

# The speakers slice builds on this one (a speaker sits in a village), so the functions here that
# need speaker counts or move speakers import gateway.speakers.service where they use it: that
# keeps the import graph one-way.

# SQLite allows 999 bound parameters per statement in older builds; stay under it.
IN_CHUNK: Final = 900
_LISTED_IDS: Final = 20

_T = TypeVar("_T")


def in_chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


# --------------------------------------------------------------------------------------------
# The city


async def get_city(session: AsyncSession, code: str) -> City:
    city = await session.scalar(select(City).where(City.code == code))
    if city is None:
        raise NotFound(
            "city_not_found",
            ko=f"도시 '{code}'를 찾을 수 없습니다.",
            en=f"City '{code}' does not exist.",
        )
    return city


async def describe_city(session: AsyncSession, city: City) -> CityRead:
    districts = await session.scalar(
        select(func.count()).select_from(District).where(District.city_id == city.id)
    )
    villages = await session.scalar(
        select(func.count()).select_from(Village).where(Village.city_id == city.id)
    )
    from gateway.speakers import service as speakers

    tally = await speakers.tally_city(session, city.id)
    return CityRead(
        id=city.id,
        code=city.code,
        name=city.name,
        timezone=city.timezone,
        district_count=districts or 0,
        village_count=villages or 0,
        speaker_count=tally.total,
        online_count=tally.online,
    )


# --------------------------------------------------------------------------------------------
# Broadcast targets


@dataclass(frozen=True)
class ResolvedTarget:
    all: bool
    district_ids: tuple[int, ...]  # districts targeted whole
    village_ids: tuple[int, ...]  # every targeted village (expanded, sorted, unique)


def _listed(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:_LISTED_IDS])
    return shown + (f" (+{len(ids) - _LISTED_IDS})" if len(ids) > _LISTED_IDS else "")


async def resolve_targets(
    session: AsyncSession,
    city: City,
    *,
    all_villages: bool,
    district_ids: Sequence[int],
    village_ids: Sequence[int],
) -> ResolvedTarget:
    """Expand a broadcast's target to villages. With ``all_villages`` the ids are ignored (all
    wins), so a city-wide alert is never refused over a stale id."""
    if all_villages:
        every_district = await session.scalars(
            select(District.id).where(District.city_id == city.id).order_by(District.id)
        )
        every_village = await session.scalars(
            select(Village.id).where(Village.city_id == city.id).order_by(Village.id)
        )
        return ResolvedTarget(True, tuple(every_district), tuple(every_village))

    wanted_districts = sorted(set(district_ids))
    wanted_villages = sorted(set(village_ids))
    if not wanted_districts and not wanted_villages:
        raise InvalidRequest(
            "empty_target",
            ko="방송 대상이 없습니다. 전체, 읍·면·동 또는 마을을 골라 주세요.",
            en="No target given: choose all villages, districts or villages.",
        )
    found_districts: set[int] = set()
    villages: set[int] = set()
    for chunk in in_chunks(wanted_districts):
        found_districts.update(
            await session.scalars(
                select(District.id).where(District.city_id == city.id, District.id.in_(chunk))
            )
        )
    missing = [d for d in wanted_districts if d not in found_districts]
    if missing:
        raise NotFound(
            "district_not_found",
            ko=f"없는 읍·면·동입니다: {_listed(missing)}",
            en=f"No such district: {_listed(missing)}",
        )
    for chunk in in_chunks(wanted_villages):
        villages.update(
            await session.scalars(
                select(Village.id).where(Village.city_id == city.id, Village.id.in_(chunk))
            )
        )
    missing = [v for v in wanted_villages if v not in villages]
    if missing:
        raise NotFound(
            "village_not_found",
            ko=f"없는 마을입니다: {_listed(missing)}",
            en=f"No such village: {_listed(missing)}",
        )
    for chunk in in_chunks(wanted_districts):
        villages.update(
            await session.scalars(select(Village.id).where(Village.district_id.in_(chunk)))
        )
    return ResolvedTarget(False, tuple(wanted_districts), tuple(sorted(villages)))


async def village_codes(
    session: AsyncSession, village_ids: Sequence[int]
) -> dict[int, tuple[str, str, int]]:
    """Village id -> (village code, village name, district id)."""
    found: dict[int, tuple[str, str, int]] = {}
    for chunk in in_chunks(sorted(set(village_ids))):
        rows = await session.execute(
            select(Village.id, Village.code, Village.name, Village.district_id).where(
                Village.id.in_(chunk)
            )
        )
        found.update({vid: (code, name, did) for vid, code, name, did in rows})
    return found


async def village_languages(
    session: AsyncSession, village_ids: Sequence[int]
) -> dict[int, tuple[str, ...]]:
    """The languages set for each of these villages that has some (others use the city's)."""
    found: dict[int, tuple[str, ...]] = {}
    for chunk in in_chunks(sorted(set(village_ids))):
        rows = await session.execute(
            select(Village.id, Village.languages).where(Village.id.in_(chunk))
        )
        found.update({vid: tuple(tags) for vid, tags in rows.tuples() if tags})
    return found


async def district_codes(session: AsyncSession, district_ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in in_chunks(sorted(set(district_ids))):
        rows = await session.execute(
            select(District.id, District.code).where(District.id.in_(chunk))
        )
        found.update(rows.tuples().all())
    return found


async def villages_by_code(
    session: AsyncSession, city_id: int, codes: Collection[str]
) -> dict[str, tuple[int, int]]:
    """Village code -> (village id, district id), for the codes that exist in the city."""
    found: dict[str, tuple[int, int]] = {}
    for chunk in in_chunks(sorted(set(codes))):
        rows = await session.execute(
            select(Village.code, Village.id, Village.district_id).where(
                Village.city_id == city_id, Village.code.in_(chunk)
            )
        )
        found.update({code: (vid, did) for code, vid, did in rows})
    return found


# --------------------------------------------------------------------------------------------
# Districts


def _district_missing(district_id: int) -> NotFound:
    return NotFound(
        "district_not_found",
        ko=f"읍·면·동 {district_id}을(를) 찾을 수 없습니다.",
        en=f"District {district_id} does not exist.",
    )


def _duplicate(what_ko: str, what_en: str, code: str) -> Conflict:
    return Conflict(
        "duplicate_code",
        ko=f"코드 '{code}'인 {what_ko}이(가) 이미 있습니다.",
        en=f"A {what_en} with code '{code}' already exists.",
    )


async def _flush_unique(session: AsyncSession, what_ko: str, what_en: str, code: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        # Two requests raced for the same code; the loser's transaction is rolled back.
        raise _duplicate(what_ko, what_en, code) from exc


async def load_district(session: AsyncSession, city_id: int, district_id: int) -> District:
    district = await session.get(District, district_id)
    if district is None or district.city_id != city_id:
        raise _district_missing(district_id)
    return district


async def _district_reads(
    session: AsyncSession, city_id: int, districts: Sequence[District]
) -> list[DistrictRead]:
    from gateway.speakers import service as speakers

    ids = [d.id for d in districts]
    village_counts: dict[int, int] = {}
    for chunk in in_chunks(ids):
        rows = await session.execute(
            select(Village.district_id, func.count())
            .where(Village.district_id.in_(chunk))
            .group_by(Village.district_id)
        )
        village_counts.update(rows.tuples().all())
    tallies = await speakers.tally(session, city_id, by="district", ids=ids)
    none = speakers.SpeakerTally(0, 0)
    return [
        DistrictRead(
            id=d.id,
            code=d.code,
            name=d.name,
            created_at=d.created_at,
            village_count=village_counts.get(d.id, 0),
            speaker_count=tallies.get(d.id, none).total,
            online_count=tallies.get(d.id, none).online,
            **geo_of(d),
        )
        for d in districts
    ]


async def list_districts(
    session: AsyncSession, city: City, *, limit: int, offset: int
) -> DistrictPage:
    total = await session.scalar(
        select(func.count()).select_from(District).where(District.city_id == city.id)
    )
    districts = await session.scalars(
        select(District)
        .where(District.city_id == city.id)
        .order_by(District.code, District.id)
        .limit(limit)
        .offset(offset)
    )
    items = await _district_reads(session, city.id, list(districts))
    return DistrictPage(items=items, total=total or 0, limit=limit, offset=offset)


async def get_district(session: AsyncSession, city: City, district_id: int) -> DistrictRead:
    district = await load_district(session, city.id, district_id)
    [read] = await _district_reads(session, city.id, [district])
    return read


async def _refuse_taken_district_code(session: AsyncSession, city_id: int, code: str) -> None:
    taken = await session.scalar(
        select(District.id).where(District.city_id == city_id, District.code == code)
    )
    if taken is not None:
        raise _duplicate("읍·면·동", "district", code)


async def create_district(
    session: AsyncSession, city: City, body: DistrictCreate, *, now: datetime
) -> DistrictRead:
    await _refuse_taken_district_code(session, city.id, body.code)
    district = District(
        city_id=city.id, code=body.code, name=body.name, created_at=now, **geo_values(body)
    )
    session.add(district)
    await _flush_unique(session, "읍·면·동", "district", body.code)
    [read] = await _district_reads(session, city.id, [district])
    return read


async def update_district(
    session: AsyncSession, city: City, district_id: int, body: DistrictUpdate
) -> DistrictRead:
    district = await load_district(session, city.id, district_id)
    if body.code is not None and body.code != district.code:
        await _refuse_taken_district_code(session, city.id, body.code)
        district.code = body.code
    if body.name is not None:
        district.name = body.name
    apply_geo(district, body)
    await _flush_unique(session, "읍·면·동", "district", district.code)
    [read] = await _district_reads(session, city.id, [district])
    return read


async def delete_district(session: AsyncSession, city: City, district_id: int) -> None:
    district = await load_district(session, city.id, district_id)
    villages = await session.scalar(
        select(func.count()).select_from(Village).where(Village.district_id == district.id)
    )
    if villages:
        # Deleting would cascade to villages, speakers and their delivery history.
        raise Conflict(
            "district_not_empty",
            ko=f"마을이 {villages}곳 있는 읍·면·동은 삭제할 수 없습니다. 마을을 먼저 옮기거나 "
            "삭제해 주세요.",
            en=f"The district still has {villages} villages; move or delete them first.",
        )
    await session.delete(district)
    await session.flush()


# --------------------------------------------------------------------------------------------
# Villages


def _village_missing(village_id: int) -> NotFound:
    return NotFound(
        "village_not_found",
        ko=f"마을 {village_id}을(를) 찾을 수 없습니다.",
        en=f"Village {village_id} does not exist.",
    )


async def load_village(session: AsyncSession, city_id: int, village_id: int) -> Village:
    village = await session.get(Village, village_id)
    if village is None or village.city_id != city_id:
        raise _village_missing(village_id)
    return village


async def _village_reads(
    session: AsyncSession, city_id: int, rows: Sequence[tuple[Village, str, str]]
) -> list[VillageRead]:
    from gateway.speakers import service as speakers

    tallies = await speakers.tally(
        session, city_id, by="village", ids=[village.id for village, _, _ in rows]
    )
    none = speakers.SpeakerTally(0, 0)
    return [
        VillageRead(
            id=village.id,
            code=village.code,
            name=village.name,
            district_id=village.district_id,
            district_code=district_code,
            district_name=district_name,
            created_at=village.created_at,
            speaker_count=tallies.get(village.id, none).total,
            online_count=tallies.get(village.id, none).online,
            languages=list(village.languages),
            **geo_of(village),
        )
        for village, district_code, district_name in rows
    ]


async def _village_read(session: AsyncSession, village: Village) -> VillageRead:
    district = await session.get_one(District, village.district_id)
    [read] = await _village_reads(
        session, village.city_id, [(village, district.code, district.name)]
    )
    return read


async def list_villages(
    session: AsyncSession,
    city: City,
    *,
    district_id: int | None,
    q: str | None,
    limit: int,
    offset: int,
) -> VillagePage:
    conditions = [Village.city_id == city.id]
    if district_id is not None:
        await load_district(session, city.id, district_id)
        conditions.append(Village.district_id == district_id)
    if q and q.strip():
        term = q.strip()
        conditions.append(
            or_(
                Village.name.contains(term, autoescape=True),
                Village.code.icontains(term, autoescape=True),
            )
        )
    total = await session.scalar(select(func.count()).select_from(Village).where(*conditions))
    rows = await session.execute(
        select(Village, District.code, District.name)
        .join(District, District.id == Village.district_id)
        .where(*conditions)
        .order_by(District.code, Village.code, Village.id)
        .limit(limit)
        .offset(offset)
    )
    items = await _village_reads(session, city.id, rows.tuples().all())
    return VillagePage(items=items, total=total or 0, limit=limit, offset=offset)


async def get_village(session: AsyncSession, city: City, village_id: int) -> VillageRead:
    return await _village_read(session, await load_village(session, city.id, village_id))


async def _refuse_taken_village_code(session: AsyncSession, city_id: int, code: str) -> None:
    taken = await session.scalar(
        select(Village.id).where(Village.city_id == city_id, Village.code == code)
    )
    if taken is not None:
        raise _duplicate("마을", "village", code)


async def create_village(
    session: AsyncSession, city: City, body: VillageCreate, *, now: datetime
) -> VillageRead:
    district = await load_district(session, city.id, body.district_id)
    await _refuse_taken_village_code(session, city.id, body.code)
    village = Village(
        city_id=city.id,
        district_id=district.id,
        code=body.code,
        name=body.name,
        created_at=now,
        languages=validate_languages(body.languages),
        **geo_values(body),
    )
    session.add(village)
    await _flush_unique(session, "마을", "village", body.code)
    return await _village_read(session, village)


async def update_village(
    session: AsyncSession, city: City, village_id: int, body: VillageUpdate
) -> VillageRead:
    from gateway.speakers import service as speakers

    village = await load_village(session, city.id, village_id)
    if body.code is not None and body.code != village.code:
        await _refuse_taken_village_code(session, city.id, body.code)
        village.code = body.code
    if body.name is not None:
        village.name = body.name
    if body.languages is not None:
        village.languages = validate_languages(body.languages)
    apply_geo(village, body)
    moved = body.district_id is not None and body.district_id != village.district_id
    if body.district_id is not None and moved:
        village.district_id = (await load_district(session, city.id, body.district_id)).id
    await _flush_unique(session, "마을", "village", village.code)
    if moved:
        await speakers.follow_village_moves(session, {village.id: village.district_id})
    return await _village_read(session, village)


async def delete_village(session: AsyncSession, city: City, village_id: int) -> None:
    from gateway.speakers import service as speakers

    village = await load_village(session, city.id, village_id)
    tally = (await speakers.tally(session, city.id, by="village", ids=[village.id])).get(village.id)
    if tally is not None and tally.total:
        # Deleting would cascade to its speakers and their delivery history.
        raise Conflict(
            "village_not_empty",
            ko=f"스피커가 {tally.total}대 있는 마을은 삭제할 수 없습니다. 스피커를 먼저 옮기거나 "
            "삭제해 주세요.",
            en=f"The village still has {tally.total} speakers; move or delete them first.",
        )
    await session.delete(village)
    await session.flush()
