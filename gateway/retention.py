"""Retention of recordings: voices are personal data, kept only as long as the city needs them.

A broadcast's audio is deleted once the broadcast is older than the retention period
(``GATEWAY_RECORDING_RETENTION_DAYS``, 90 by default; disaster alerts
``GATEWAY_DISASTER_RECORDING_RETENTION_DAYS``), unless it is held as evidence. The broadcast's
record (who, when, to whom, how it was delivered) stays. Audio that a newer broadcast, a pending
approval or an active schedule still uses is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.models import ApprovalRequest
from gateway.broadcasts.models import AudioAsset, Broadcast
from gateway.schedules.models import Schedule
from gateway.settings import Settings
from wire.contract import Category

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purge:
    broadcasts: int
    recordings: int


async def purge_recordings(
    session: AsyncSession, settings: Settings, *, city_id: int, now: datetime, limit: int = 500
) -> Purge:
    cutoff = now - timedelta(days=settings.recording_retention_days)
    disaster_cutoff = now - timedelta(days=settings.disaster_recording_retention_days)
    due = list(
        await session.scalars(
            select(Broadcast)
            .where(
                Broadcast.city_id == city_id,
                Broadcast.audio_purged_at.is_(None),
                Broadcast.evidence_hold.is_(False),
                or_(
                    (Broadcast.category != Category.DISASTER.value)
                    & (Broadcast.created_at < cutoff),
                    Broadcast.created_at < disaster_cutoff,
                ),
            )
            .order_by(Broadcast.created_at)
            .limit(limit)
        )
    )
    if not due:
        return Purge(0, 0)
    candidates = {sha for b in due for sha in b.audio_sha256.values()}
    candidates -= await _still_used(session, city_id, {b.id for b in due})
    if candidates:
        await session.execute(delete(AudioAsset).where(AudioAsset.sha256.in_(sorted(candidates))))
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id.in_([b.id for b in due]))
        .values(audio_purged_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    log.info(
        "보존 기간이 지난 녹음 삭제 / purged %d recordings of %d broadcasts",
        len(candidates),
        len(due),
    )
    return Purge(len(due), len(candidates))


async def _still_used(session: AsyncSession, city_id: int, purging: set[str]) -> set[str]:
    used: set[str] = set()
    kept = await session.execute(
        select(Broadcast.id, Broadcast.audio_sha256).where(
            Broadcast.city_id == city_id, Broadcast.audio_purged_at.is_(None)
        )
    )
    for broadcast_id, shas in kept.tuples():
        if broadcast_id not in purging:
            used.update(shas.values())
    pending = await session.scalars(
        select(ApprovalRequest.audio_sha256).where(
            ApprovalRequest.city_id == city_id, ApprovalRequest.state == "pending"
        )
    )
    for shas in pending:
        used.update(shas.values())
    scheduled = await session.scalars(
        select(Schedule.audio_sha256).where(Schedule.city_id == city_id, Schedule.state == "active")
    )
    for shas in scheduled:
        used.update(shas.values())
    return used


async def hold(
    session: AsyncSession, broadcast: Broadcast, *, held: bool, reason: str | None
) -> Broadcast:
    broadcast.evidence_hold = held
    broadcast.hold_reason = reason if held else None
    await session.flush()
    return broadcast
