"""Places' geography in the database: their coordinates, codes and boundaries, and the villages
an area covers (the geometry is ``gateway.places.areas``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.places import areas
from gateway.places.areas import Area, AreaRefused, Codes, Place
from gateway.places.models import District, Village
from gateway.places.schemas import (
    GEO_FIELDS,
    AreaPreview,
    AreaQuery,
    AreaVillage,
    GeoCreate,
    GeoPatch,
)

if TYPE_CHECKING:  # gateway.auth reaches this module through places.service
    from gateway.auth import Principal

_LISTED = 20
# Every row of a multi-row insert names the same columns: the geography a row lacks is null.
NO_GEO: dict[str, object] = dict.fromkeys(GEO_FIELDS)


def geo_of(place: District | Village) -> dict[str, Any]:
    """The geography fields of a row, as the read schemas have them."""
    return {name: getattr(place, name) for name in GEO_FIELDS}


def geo_values(body: GeoCreate) -> dict[str, Any]:
    return {name: getattr(body, name) for name in GEO_FIELDS}


def apply_geo(place: District | Village, body: GeoPatch) -> None:
    """Set the geography fields the update names (null clears one)."""
    for name in GEO_FIELDS:
        if name in body.model_fields_set:
            setattr(place, name, getattr(body, name))


def assign(place: District | Village, values: dict[str, object]) -> bool:
    """Set ``values`` on ``place``; whether any of them differed."""
    changed = False
    for name, value in values.items():
        if getattr(place, name) != value:
            setattr(place, name, value)
            changed = True
    return changed


def _place(village: Village, district: District) -> Place:
    national = (village.legal_code, village.admin_code, district.legal_code, district.admin_code)
    return Place(
        id=village.id,
        code=village.code,
        name=village.name,
        district_id=village.district_id,
        lat=village.lat,
        lon=village.lon,
        national_codes=tuple(dict.fromkeys(c for c in national if c)),
        boundary=areas.boundary_geometry(village.boundary) if village.boundary else None,
    )


async def city_places(session: AsyncSession, city_id: int) -> list[Place]:
    """Every village of the city as areas see it, by id."""
    rows = await session.execute(
        select(Village, District)
        .join(District, District.id == Village.district_id)
        .where(Village.city_id == city_id)
        .order_by(Village.id)
    )
    return [_place(village, district) for village, district in rows.tuples()]


async def villages_in(
    session: AsyncSession, city_id: int, wanted: Area | Sequence[Area], *, allow_empty: bool = False
) -> list[Place]:
    """The villages of the city that one of the areas covers, by id.

    Refused (422): a code that covers no village of the city (``unknown_area_code``), and,
    unless ``allow_empty``, areas that together cover no village (``empty_area``)."""
    shapes: Sequence[Area] = (
        [wanted] if isinstance(wanted, areas.Circle | areas.Polygon | Codes) else wanted
    )
    places = await city_places(session, city_id)
    unknown = [
        code
        for shape in shapes
        if isinstance(shape, Codes)
        for code in areas.codes_reaching_nothing(shape, places)
    ]
    if unknown:
        listed = ", ".join(unknown[:_LISTED])
        raise AreaRefused(
            "unknown_area_code",
            ko=f"이 도시의 어느 마을에도 해당하지 않는 행정 코드입니다: {listed}",
            en=f"No village of the city has these administrative codes: {listed}",
        )
    covered: dict[int, Place] = {}
    for shape in shapes:
        covered.update((p.id, p) for p in areas.places_in(shape, places))
    if not covered and not allow_empty:
        raise AreaRefused(
            "empty_area",
            ko="지정한 지역 안에 마을이 없습니다.",
            en="The area covers no village.",
        )
    return [covered[vid] for vid in sorted(covered)]


def outside_reach(
    places: Collection[Place], village_ids: Collection[int], district_ids: Collection[int]
) -> list[int]:
    """The ids of ``places`` in neither the villages nor the districts given (a person's area)."""
    return sorted(
        p.id for p in places if p.id not in village_ids and p.district_id not in district_ids
    )


@dataclass(frozen=True)
class AreaTarget:
    """A broadcast's target given as an area: the villages it covers, and what the broadcast
    records of it (the area as given)."""

    village_ids: tuple[int, ...]
    recorded: dict[str, object]


async def target_area(
    session: AsyncSession,
    city_id: int,
    area: str | None,
    *,
    all_villages: bool,
    district_ids: Collection[int],
    village_ids: Collection[int],
) -> AreaTarget | None:
    """A send request's ``area`` (its JSON text) resolved to villages, or None when the request
    has none. An area is instead of the other targets, never beside them."""
    if area is None or not area.strip():
        return None
    if all_villages or district_ids or village_ids:
        raise AreaRefused(
            "area_and_target",
            ko="지역(area)과 전체·읍·면·동·마을 대상은 함께 줄 수 없습니다. 하나만 주세요.",
            en="Give an area or all villages, districts and villages, not both.",
        )
    shape = areas.area_from_json(area)
    covered = await villages_in(session, city_id, shape)
    return AreaTarget(tuple(p.id for p in covered), {"area": areas.area_to_json(shape)})


async def preview(
    session: AsyncSession, city_id: int, query: AreaQuery, principal: Principal
) -> AreaPreview:
    """Which villages the area covers (none is an answer here, not an error), and which of
    them lie outside the caller's area."""
    from gateway import scopes

    shape = areas.area_from_json(query.model_dump(exclude_none=True))
    covered = await villages_in(session, city_id, shape, allow_empty=True)
    outside = (
        []
        if principal.role in scopes.CITY_WIDE
        else outside_reach(covered, principal.village_ids, principal.district_ids)
    )
    return AreaPreview(
        area=areas.area_to_json(shape),
        total=len(covered),
        villages=[
            AreaVillage(
                id=p.id, code=p.code, name=p.name, district_id=p.district_id, lat=p.lat, lon=p.lon
            )
            for p in covered
        ],
        outside_scope=outside,
    )
