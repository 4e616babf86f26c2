"""HTTP routes for the city, its districts and villages, and their CSV import."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, File, Query, Request, UploadFile

from gateway.auth import Admin, Anyone
from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.devicesec.brokeradmin import after_change
from gateway.error_catalog import documented
from gateway.places import bulk, csv_import, geography, service
from gateway.places.schemas import (
    AreaPreview,
    AreaQuery,
    CityRead,
    DistrictCreate,
    DistrictPage,
    DistrictRead,
    DistrictUpdate,
    PlacesImportReport,
    VillageCreate,
    VillagePage,
    VillageRead,
    VillageUpdate,
)

router = APIRouter(tags=["places"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Offset = Annotated[int, Query(ge=0)]


_DISTRICT_404: Final = documented("district_not_found")
_VILLAGE_404: Final = documented("village_not_found")


@router.get("/city", operation_id="get_city")
async def get_city(session: SessionDep, _user: Anyone, city: CityDep) -> CityRead:
    """The deployment's city with its district, village and speaker counts."""
    return await service.describe_city(session, city)


@router.get("/districts", operation_id="list_districts")
async def list_districts(
    session: SessionDep, _user: Anyone, city: CityDep, limit: Limit = 100, offset: Offset = 0
) -> DistrictPage:
    return await service.list_districts(session, city, limit=limit, offset=offset)


@router.post(
    "/districts",
    status_code=201,
    operation_id="create_district",
    responses=documented("duplicate_code"),
)
async def create_district(
    body: DistrictCreate, session: SessionDep, _user: Admin, city: CityDep, now: NowDep
) -> DistrictRead:
    return await service.create_district(session, city, body, now=now)


@router.get("/districts/{district_id}", operation_id="get_district", responses=_DISTRICT_404)
async def get_district(
    district_id: int, session: SessionDep, _user: Anyone, city: CityDep
) -> DistrictRead:
    return await service.get_district(session, city, district_id)


@router.patch(
    "/districts/{district_id}",
    operation_id="update_district",
    responses=documented("district_not_found", "duplicate_code"),
)
async def update_district(
    district_id: int,
    body: DistrictUpdate,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    request: Request,
) -> DistrictRead:
    updated = await service.update_district(session, city, district_id, body)
    await after_change(state_of(request), session)  # a new code: new topics for its speakers
    return updated


@router.delete(
    "/districts/{district_id}",
    status_code=204,
    operation_id="delete_district",
    responses=documented("district_not_found", "district_not_empty"),
)
async def delete_district(
    district_id: int, session: SessionDep, _user: Admin, city: CityDep
) -> None:
    await service.delete_district(session, city, district_id)


@router.get("/villages", operation_id="list_villages", responses=_DISTRICT_404)
async def list_villages(
    session: SessionDep,
    _user: Anyone,
    city: CityDep,
    district_id: int | None = None,
    q: Annotated[
        str | None, Query(max_length=100, description="Part of a village's name or code.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> VillagePage:
    return await service.list_villages(
        session, city, district_id=district_id, q=q, limit=limit, offset=offset
    )


@router.post(
    "/villages",
    status_code=201,
    operation_id="create_village",
    responses=documented("district_not_found", "duplicate_code"),
)
async def create_village(
    body: VillageCreate, session: SessionDep, _user: Admin, city: CityDep, now: NowDep
) -> VillageRead:
    return await service.create_village(session, city, body, now=now)


@router.get("/villages/{village_id}", operation_id="get_village", responses=_VILLAGE_404)
async def get_village(
    village_id: int, session: SessionDep, _user: Anyone, city: CityDep
) -> VillageRead:
    return await service.get_village(session, city, village_id)


@router.patch(
    "/villages/{village_id}",
    operation_id="update_village",
    responses=documented("village_not_found", "district_not_found", "duplicate_code"),
)
async def update_village(
    village_id: int,
    body: VillageUpdate,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    request: Request,
) -> VillageRead:
    """Rename, recode or move a village; moving it moves its speakers to the new district."""
    updated = await service.update_village(session, city, village_id, body)
    await after_change(state_of(request), session)
    return updated


@router.delete(
    "/villages/{village_id}",
    status_code=204,
    operation_id="delete_village",
    responses=documented("village_not_found", "village_not_empty"),
)
async def delete_village(village_id: int, session: SessionDep, _user: Admin, city: CityDep) -> None:
    await service.delete_village(session, city, village_id)


@router.post(
    "/places/import",
    operation_id="import_places",
    responses=documented("invalid_csv", "csv_too_large"),
)
async def import_places(
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
    file: Annotated[
        UploadFile,
        File(
            description="UTF-8 CSV (BOM optional) with the header "
            "district_code,district_name,village_code,village_name"
        ),
    ],
) -> PlacesImportReport:
    """Create or update districts and villages by code: all rows or none."""
    data = await csv_import.read_upload(file)
    report = await bulk.import_places(session, city, data, now=now)
    await after_change(state_of(request), session)
    return report


@router.post(
    "/areas/preview",
    operation_id="preview_area",
    responses=documented(
        "invalid_area",
        "invalid_area_code",
        "invalid_coordinates",
        "invalid_radius",
        "invalid_polygon",
        "unknown_area_code",
    ),
)
async def preview_area(
    body: AreaQuery, session: SessionDep, user: Anyone, city: CityDep
) -> AreaPreview:
    """The villages an area covers, as a send to it would target them, without sending: a
    village is inside a circle when its point is within the radius, inside a polygon when its
    point is (or, where its boundary is known, when that boundary comes within the circle or
    touches the polygon); a code covers the villages under it. Villages without coordinates are
    reached by codes only."""
    return await geography.preview(session, city.id, body, user)
