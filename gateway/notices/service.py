"""Residents' notices: every real broadcast addressed to a village, newest first, for a while,
with whether its speakers played it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts import language_audio
from gateway.broadcasts.audio_links import AudioLinks
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import cleared, reached_villages
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
# Broadcasts read at a time while looking for those addressed to a village.
_BATCH: Final = 200


def _audio_url(broadcast: Broadcast, links: AudioLinks, audio_set: str | None) -> str | None:
    """A signed link, good while the notice is listed: residents do not log in. The audio the
    village's speakers were sent (``audio_set``: its languages' reading)."""
    if broadcast.audio_purged_at is not None:
        return None
    encodings = language_audio.encodings_of(broadcast.audio_sha256, audio_set)
    for codec in _AUDIO_ORDER:
        sha256 = encodings.get(codec)
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


def in_language(broadcast: Broadcast, lang: str | None) -> tuple[str | None, str | None, str]:
    """The notice's text in ``lang`` (a BCP 47 tag; its primary subtag counts) where the
    broadcast has it, else in Korean, and the language it is in. The title stays Korean."""
    primary = (lang or "").strip().lower().split("-")[0]
    translated = (broadcast.texts or {}).get(primary) if primary and primary != "ko" else None
    if translated is None or broadcast.text is None:
        return broadcast.title, broadcast.text, "ko"
    return broadcast.title, translated, primary


async def list_notices(
    session: AsyncSession,
    city: City,
    village_id: int,
    *,
    now: datetime,
    limit: int,
    links: AudioLinks,
    lang: str | None = None,
) -> VillageNotices:
    """Every real broadcast (never test or exercise) addressed to the village in the last month,
    newest first, whether or not its speakers played it; one cancelled before anything was sent
    is left out."""
    village = await places.get_village(session, city, village_id)
    sent_before_cancel = exists(
        select(Delivery.id).where(
            Delivery.broadcast_id == Broadcast.id,
            Delivery.sent_at.is_not(None),
            Delivery.sent_at <= Broadcast.cancelled_at,
        )
    )
    candidates = (
        select(Broadcast)
        .where(
            Broadcast.city_id == city.id,
            Broadcast.mode == "live",
            Broadcast.created_at >= now - KEEP_FOR,
            or_(Broadcast.cancelled_at.is_(None), sent_before_cancel),
        )
        .order_by(Broadcast.created_at.desc(), Broadcast.id)
    )
    # Addressed to the village: its id among the villages the target resolved to (JSON, so
    # checked here, newest first, until the page is full; resends included, folded below).
    addressed: list[Broadcast] = []
    offset = 0
    while len(addressed) < 2 * limit:
        batch = list(await session.scalars(candidates.limit(_BATCH).offset(offset)))
        addressed += [b for b in batch if village_id in reached_villages(b)]
        if len(batch) < _BATCH:
            break
        offset += _BATCH
    addressed = addressed[: 2 * limit]
    played_at = func.min(Delivery.played_at)
    rows = await session.execute(
        select(Delivery.broadcast_id, played_at)
        .where(
            Delivery.broadcast_id.in_([b.id for b in addressed]),
            Delivery.village_id == village_id,
            Delivery.state.in_([s.value for s in HEARD]),
            Delivery.played_at.is_not(None),
        )
        .group_by(Delivery.broadcast_id)
    )
    played: dict[str, datetime] = {bid: when for bid, when in rows.tuples() if when is not None}
    audio_sets = dict(
        (
            await session.execute(
                select(Delivery.broadcast_id, Delivery.audio_set)
                .where(
                    Delivery.broadcast_id.in_([b.id for b in addressed]),
                    Delivery.village_id == village_id,
                    Delivery.audio_set.is_not(None),
                )
                .distinct()
            )
        )
        .tuples()
        .all()
    )
    # A resend to the speakers that missed it is the same notice: residents see it once, as
    # the original, played when the first of the chain played.
    listed = {b.id for b in addressed}
    for broadcast in addressed:
        original = broadcast.target.get("resend_of")
        when = played.get(broadcast.id)
        if isinstance(original, str) and original in listed and when is not None:
            earlier = played.get(original)
            played[original] = when if earlier is None else min(when, earlier)
    ended = await cleared(session, sorted(listed))
    items = []
    for broadcast in addressed:
        if broadcast.target.get("resend_of") in listed:
            continue
        title, text, language = in_language(broadcast, lang)
        items.append(
            Notice(
                id=broadcast.id,
                category=Category(broadcast.category),
                title=title,
                text=text,
                language=language,
                sent_at=broadcast.created_at,
                played_at=played.get(broadcast.id),
                played=broadcast.id in played,
                cancelled=broadcast.cancelled_at is not None,
                duration_ms=broadcast.duration_ms,
                audio_url=_audio_url(broadcast, links, audio_sets.get(broadcast.id)),
                all_clear_of=broadcast.all_clear_of,
                all_cleared_at=ended[broadcast.id].at if broadcast.id in ended else None,
            )
        )
    return VillageNotices(
        village=PublicVillage(
            id=village.id, name=village.name, district_name=village.district_name
        ),
        items=items[:limit],
    )
