"""Creating or updating a city's districts and villages in bulk, by code (the places CSV, the
seed, benches): all rows or none."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.places import csv_import
from gateway.places.csv_import import PlaceRow
from gateway.places.geography import NO_GEO, assign
from gateway.places.models import City, District, Village
from gateway.places.schemas import PlacesImportReport
from gateway.places.service import in_chunks


async def import_places(
    session: AsyncSession, city: City, data: bytes, *, now: datetime
) -> PlacesImportReport:
    return await upsert_places(session, city, csv_import.parse_places(data), now=now)


async def upsert_places(
    session: AsyncSession, city: City, rows: Sequence[PlaceRow], *, now: datetime
) -> PlacesImportReport:
    """Create or update districts and villages by code; villages not in ``rows`` are left alone."""
    from gateway.speakers import service as speakers

    districts = {
        d.code: d
        for d in await session.scalars(select(District).where(District.city_id == city.id))
    }
    names = {row.district_code: row.district_name for row in rows}
    geos = {row.district_code: row.district_geo for row in rows if row.district_geo}
    new_districts = [code for code in names if code not in districts]
    districts_updated = 0
    for code, name in names.items():
        if code not in districts:
            continue
        district = districts[code]
        if assign(district, {"name": name, **geos.get(code, {})}):
            districts_updated += 1
    district_ids = {code: d.id for code, d in districts.items()}
    if new_districts:
        created = await session.execute(
            insert(District).returning(District.id, District.code),
            [
                {
                    "city_id": city.id,
                    "code": code,
                    "name": names[code],
                    "created_at": now,
                    **NO_GEO,
                    **geos.get(code, {}),
                }
                for code in new_districts
            ],
        )
        district_ids.update({code: did for did, code in created})

    villages = {
        v.code: v
        for chunk in in_chunks(sorted({row.village_code for row in rows}))
        for v in await session.scalars(
            select(Village).where(Village.city_id == city.id, Village.code.in_(chunk))
        )
    }
    fresh: list[dict[str, object]] = []
    moves: dict[int, int] = {}
    villages_updated = 0
    for row in rows:
        district_id = district_ids[row.district_code]
        village = villages.get(row.village_code)
        if village is None:
            fresh.append(
                {
                    "city_id": city.id,
                    "district_id": district_id,
                    "code": row.village_code,
                    "name": row.village_name,
                    "created_at": now,
                    "languages": list(row.languages or ()),
                    **NO_GEO,
                    **row.geo,
                }
            )
            continue
        moved = village.district_id != district_id
        given = {"name": row.village_name, **row.geo}
        if row.languages is not None:
            given["languages"] = list(row.languages)
        if not assign(village, given) and not moved:
            continue
        villages_updated += 1
        if moved:
            village.district_id = district_id
            moves[village.id] = district_id
    if fresh:
        await session.execute(insert(Village), fresh)
    await session.flush()
    if moves:
        await speakers.follow_village_moves(session, moves)
    return PlacesImportReport(
        rows=len(rows),
        districts_created=len(new_districts),
        districts_updated=districts_updated,
        villages_created=len(fresh),
        villages_updated=villages_updated,
    )
