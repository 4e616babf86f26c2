"""HTTP routes for residents' notices: public, no login, no personal data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.error_catalog import documented
from gateway.notices import service
from gateway.notices.schemas import PublicVillagePage, VillageNotices

router = APIRouter(tags=["notices"])


@router.get("/notices/villages", operation_id="find_notice_villages")
async def find_villages(
    session: SessionDep,
    city: CityDep,
    q: Annotated[str | None, Query(max_length=100, description="Part of a village's name.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PublicVillagePage:
    """Villages by name, for a resident to find their own (no login)."""
    return await service.find_villages(session, city, q=q, limit=limit, offset=offset)


@router.get(
    "/notices/villages/{village_id}",
    operation_id="list_village_notices",
    responses=documented("village_not_found"),
)
async def list_village_notices(
    village_id: int,
    request: Request,
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
    lang: Annotated[
        str | None,
        Query(
            pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
            description="The resident's language (BCP 47, e.g. vi, en); Korean where the "
            "notice has no text in it.",
        ),
    ] = None,
) -> VillageNotices:
    """Every notice addressed to the village in the last month, newest first (no login),
    whether or not its speakers played it (``played``): real broadcasts only, never test or
    exercise ones, and none cancelled before it was sent."""
    return await service.list_notices(
        session,
        city,
        village_id,
        now=now,
        limit=limit,
        links=state_of(request).audio_links,
        lang=lang,
    )
