"""Residents' notices: live broadcasts a village's speakers played, newest first, for a while."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.audio_links import AudioLinks
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import cleared
from gateway.deliveries.models import Delivery
from gateway.deliveries.states import HEARD
from gateway.notices.schemas import Notice, PublicVillage, PublicVillagePage, VillageNotices
from gateway.places import service as places
from gateway.places.models import City
from wire.contract import Category

# Phone-notice systems in the field keep replays about a month.
KEEP_FOR: Final = timedelta(days=31)
# Browsers play either; MP3 first because every phone's browser plays it.
_AUDIO_ORDER: Final = ("mp3", "opus")


def _audio_url(broadcast: Broadcast, links: AudioLinks) -> str | None:
    """A signed link, good while the notice is listed: residents do not log in."""
    if broadcast.audio_purged_at is not None:
        return None
    for codec in _AUDIO_ORDER:
        sha256 = broadcast.audio_sha256.get(codec)
        if sha256:
            return links.path(sha256, broadcast.created_at + KEEP_FOR)
    return None


async def find_villages(
    session: AsyncSession, city: City, *, q: str | None, limit: int, offset: int
) -> PublicVillagePage:
    page = await places.list_villages(
        session, city, district_id=None, q=q, limit=limit, offset=offset
    )
    return PublicVillagePage(
        items=[
            PublicVillage(id=v.id, name=v.name, district_name=v.district_name) for v in page.items
        ],
        total=page.total,
        limit=limit,
        offset=offset,
    )


async def list_notices(
    session: AsyncSession,
    city: City,
    village_id: int,
    *,
    now: datetime,
    limit: int,
    links: AudioLinks,
) -> VillageNotices:
    """Only live broadcasts (never test or exercise) that at least one of the village's speakers
    played and that were not cancelled: what residents really heard."""
    village = await places.get_village(session, city, village_id)
    played_at = func.min(Delivery.played_at).label("played_at")
    rows = await session.execute(
        select(Broadcast, played_at)
        .join(Delivery, Delivery.broadcast_id == Broadcast.id)
        .where(
            Broadcast.city_id == city.id,
            Broadcast.mode == "live",
            Broadcast.cancelled_at.is_(None),
            Broadcast.created_at >= now - KEEP_FOR,
            Delivery.village_id == village_id,
            Delivery.state.in_([s.value for s in HEARD]),
            Delivery.played_at.is_not(None),
        )
        .group_by(Broadcast.id)
        .order_by(played_at.desc(), Broadcast.id)
        .limit(limit)
    )
    played = list(rows.tuples())
    # A resend to the speakers that missed it is the same notice: residents see it once, as the
    # earliest broadcast of the chain that this village played.
    listed = {broadcast.id for broadcast, _ in played}
    ended = await cleared(session, sorted(listed))
    items = [
        Notice(
            id=broadcast.id,
            category=Category(broadcast.category),
            title=broadcast.title,
            text=broadcast.text,
            played_at=when,
            duration_ms=broadcast.duration_ms,
            audio_url=_audio_url(broadcast, links),
            all_clear_of=broadcast.all_clear_of,
            all_cleared_at=ended[broadcast.id].at if broadcast.id in ended else None,
        )
        for broadcast, when in played
        if broadcast.target.get("resend_of") not in listed
    ]
    return VillageNotices(
        village=PublicVillage(
            id=village.id, name=village.name, district_name=village.district_name
        ),
        items=items,
    )
