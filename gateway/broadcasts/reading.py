"""Reading broadcasts: who may see one, finding and listing them, their state and the summary of
their deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway import scopes
from gateway.auth import Principal
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.schemas import (
    BroadcastDetail,
    BroadcastSummary,
    SpeakerCounts,
    SpeakerDelivery,
    VillageCounts,
    VillageDelivery,
)
from gateway.broadcasts.status_cache import StatusCache
from gateway.deliveries import live_report, proof
from gateway.deliveries import service as deliveries
from gateway.deliveries.models import Delivery
from gateway.errors import Conflict, NotFound
from gateway.fallback import reading as fallback
from gateway.places import service as places
from gateway.places.models import City
from wire.contract import Category


@dataclass(frozen=True)
class Cleared:
    """When an alert was cleared ("해제"), and by which broadcast."""

    by: str
    at: datetime


async def cleared(session: AsyncSession, broadcast_ids: list[str]) -> dict[str, Cleared]:
    """The all clear of each alert that has one (not cancelled), by alert id."""
    if not broadcast_ids:
        return {}
    rows = await session.execute(
        select(Broadcast.all_clear_of, Broadcast.id, Broadcast.created_at)
        .where(Broadcast.all_clear_of.in_(broadcast_ids), Broadcast.cancelled_at.is_(None))
        .order_by(Broadcast.created_at)
    )
    found: dict[str, Cleared] = {}
    for alert_id, clear_id, at in rows.tuples():
        if alert_id is not None and alert_id not in found:
            found[alert_id] = Cleared(clear_id, at)
    return found


def already_cleared() -> Conflict:
    return Conflict(
        "already_all_clear",
        ko="이미 해제 방송을 보낸 경보입니다.",
        en="This alert has already been cleared.",
    )


def reached_villages(broadcast: Broadcast) -> list[int]:
    return [int(v) for v in broadcast.target.get("resolved_village_ids", [])]  # type: ignore[attr-defined]


async def authorize_read(session: AsyncSession, principal: Principal, broadcast: Broadcast) -> None:
    await scopes.authorize_read(session, principal, reached_villages(broadcast))


async def check_readable(
    session: AsyncSession, principal: Principal, city_id: int, broadcast_id: str
) -> None:
    """Refuse a caller whose area the broadcast does not reach (city-wide roles: no query)."""
    if principal.role in scopes.CITY_WIDE:
        return
    await authorize_read(session, principal, await get_broadcast(session, city_id, broadcast_id))


async def get_broadcast(session: AsyncSession, city_id: int, broadcast_id: str) -> Broadcast:
    broadcast = await session.get(Broadcast, broadcast_id) if len(broadcast_id) == 32 else None
    if broadcast is None or broadcast.city_id != city_id:
        raise NotFound(
            "broadcast_not_found",
            ko="방송을 찾을 수 없습니다.",
            en=f"Broadcast {broadcast_id!r} does not exist.",
        )
    return broadcast


async def list_broadcasts(
    session: AsyncSession,
    city: City,
    *,
    category: Category | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
    principal: Principal,
    mode: str | None = None,
    created_by: str | None = None,
) -> tuple[list[Broadcast], int]:
    query = select(Broadcast).where(Broadcast.city_id == city.id)
    if created_by is not None:
        query = query.where(Broadcast.created_by == created_by)
    if category is not None:
        query = query.where(Broadcast.category == category.value)
    if mode is not None:
        query = query.where(Broadcast.mode == mode)
    if since is not None:
        query = query.where(Broadcast.created_at >= since)
    if until is not None:
        query = query.where(Broadcast.created_at < until)
    ordered = query.order_by(Broadcast.created_at.desc(), Broadcast.id)
    if principal.role not in scopes.CITY_WIDE:
        # Scoped callers see the broadcasts that reach their area (filtered here: the target
        # is JSON, and a district or village sees a bounded number of broadcasts).
        visible = [
            b
            for b in await session.scalars(ordered)
            if await scopes.touches(session, principal, reached_villages(b))
        ]
        return visible[offset : offset + limit], len(visible)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(ordered.limit(limit).offset(offset))
    return list(rows), total


def broadcast_state(broadcast: Broadcast, speaker_counts: dict[str, int]) -> str:
    if broadcast.cancelled_at is not None:
        return "cancelled"
    open_count = sum(
        speaker_counts.get(k, 0)
        for k in ("queued", "sent", "received", "playing", "preempted", "offline", "held")
    )
    if broadcast.finished_at is not None or open_count == 0:
        return "completed"
    if open_count == speaker_counts.get("queued", 0):
        return "queued"
    return "in_progress"


async def read_summary(
    cache: StatusCache,
    sessions: async_sessionmaker[AsyncSession],
    city_id: int,
    broadcast_id: str,
    *,
    detail: bool,
) -> BroadcastSummary | BroadcastDetail:
    """A broadcast's summary as this replica last read it, at most a moment old."""

    async def load() -> BroadcastSummary | BroadcastDetail:
        async with sessions() as session:
            broadcast = await get_broadcast(session, city_id, broadcast_id)
            return await summarize(session, broadcast, detail=detail)

    summary = await cache.get((city_id, broadcast_id, detail), load)
    assert isinstance(summary, BroadcastSummary)
    return summary


async def summarize(
    session: AsyncSession, broadcast: Broadcast, *, detail: bool
) -> BroadcastSummary | BroadcastDetail:
    """Speakers counted by state and villages by outcome; with detail, every speaker's state."""
    speaker_counts, tallies = await deliveries.tally(session, broadcast.id)
    phones = await fallback.phone_counts(session, broadcast.id)
    pushes = await fallback.push_counts(session, broadcast.id)
    resolved = reached_villages(broadcast)
    clear = (await cleared(session, [broadcast.id])).get(broadcast.id)
    village_counts = VillageCounts(total=len(resolved))
    outcomes: dict[int, str] = {}
    for village_id in resolved:
        tally = tallies.get(village_id)
        outcome = tally.outcome if tally is not None else "no_speakers"
        outcomes[village_id] = outcome
        setattr(village_counts, outcome, getattr(village_counts, outcome) + 1)
    fields = {
        "id": broadcast.id,
        "state": broadcast_state(broadcast, speaker_counts),
        "category": broadcast.category,
        "mode": broadcast.mode,
        "priority": broadcast.priority,
        "title": broadcast.title,
        "text": broadcast.text,
        "texts": broadcast.texts or {},
        "created_at": broadcast.created_at,
        "expires_at": broadcast.expires_at,
        "cancelled_at": broadcast.cancelled_at,
        "finished_at": broadcast.finished_at,
        "duration_ms": broadcast.duration_ms,
        "evidence_hold": broadcast.evidence_hold,
        "audio_purged_at": broadcast.audio_purged_at,
        "all_clear_of": broadcast.all_clear_of,
        "all_cleared_at": clear.at if clear is not None else None,
        "all_cleared_in": clear.by if clear is not None else None,
        "target": {k: v for k, v in broadcast.target.items() if k != "resolved_village_ids"},
        "villages": village_counts,
        "speakers": SpeakerCounts(**speaker_counts),
        "phone": fallback.total(phones, fallback.PhoneCounts),
        "push": fallback.total(pushes, fallback.PushCounts),
    }
    if not detail:
        return BroadcastSummary.model_validate(fields)
    names = await places.village_codes(session, resolved)
    jobs = await fallback.fallbacks(session, broadcast.id)
    confirmed = await deliveries.households_confirmed(session, broadcast.id)
    by_village: dict[int, list[SpeakerDelivery]] = {v: [] for v in resolved}
    rows_of: dict[int, list[Delivery]] = {}
    repeated = broadcast.target.get("resend_of")
    resend_of = repeated if isinstance(repeated, str) else None
    for delivery, code, online in await deliveries.deliveries_of(session, broadcast.id):
        rows_of.setdefault(delivery.village_id, []).append(delivery)
        by_village.setdefault(delivery.village_id, []).append(
            SpeakerDelivery(
                speaker_id=delivery.speaker_id,
                code=code,
                state=delivery.state,
                online=online,
                reason=delivery.reason,
                attempts=delivery.attempts,
                sends=delivery.sends,
                updated_at=delivery.updated_at,
                played_at=delivery.played_at,
                proof=proof.shown(delivery),
                live_latency_ms=delivery.live_latency_ms,
                live_frames_lost=delivery.live_frames_lost,
                live_mouth_p50_ms=delivery.live_mouth_p50_ms,
                live_mouth_p95_ms=delivery.live_mouth_p95_ms,
                resent_in=delivery.resent_in,
                resend_of=resend_of,
            )
        )
    villages = [
        VillageDelivery(
            village_id=vid,
            code=names[vid][0] if vid in names else str(vid),
            name=names[vid][1] if vid in names else "",
            outcome=outcomes.get(vid, "no_speakers"),
            speakers=rows,
            speakers_played=tallies[vid].played if vid in tallies else 0,
            households_confirmed=confirmed.get(vid, 0),
            phone=phones.get(vid) or fallback.PhoneCounts(),
            push=pushes.get(vid) or fallback.PushCounts(),
            fallback=jobs.get(vid),
            **live_report.live_figures(rows_of.get(vid, ())).fields(),
        )
        for vid, rows in by_village.items()
    ]
    return BroadcastDetail.model_validate({**fields, "village_deliveries": villages})
