"""Retention of recordings: voices are personal data, kept only as long as the city needs them.

A broadcast's audio is deleted once the broadcast is older than the retention period
(``GATEWAY_RECORDING_RETENTION_DAYS``, 90 by default; disaster alerts
``GATEWAY_DISASTER_RECORDING_RETENTION_DAYS``), unless it is held as evidence. The broadcast's
record (who, when, to whom, how it was delivered) stays. Audio that a newer broadcast, a pending
approval or an active or paused schedule still uses is kept.

Residents' personal data runs on its own clock (``purge_residents``): a resident whose consent
is older than ``GATEWAY_RESIDENT_CONSENT_DAYS`` and was not renewed has their number and personal
fields erased (the row stays, anonymised, for counts); a sign-up's number goes once its code
expired, the sign-up itself after a day; numbers sealed with a previous phone key are sealed
again under the current one.

Audio that no broadcast ever played (a cancelled schedule's, a rejected, withdrawn or lapsed
approval request's, anything stored and never used) runs on the same clock
(``purge_unused_audio``): deleted once it is older than the retention period and whatever used
it is older than its category's period, unless a broadcast that still keeps its recording (one
held as evidence included) uses it too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.models import ApprovalRequest
from gateway.broadcasts.models import AudioAsset, Broadcast
from gateway.residents import service as residents
from gateway.residents import signup
from gateway.residents.crypto import PhoneCipher
from gateway.schedules.models import Schedule
from gateway.settings import Settings
from wire.contract import Category

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purge:
    broadcasts: int
    recordings: int
    unused: int = 0  # recordings no broadcast ever played (``purge_unused_audio``)
    residents: int = 0  # residents erased when their consent ran out (``purge_residents``)


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
        select(Schedule.audio_sha256).where(
            Schedule.city_id == city_id, Schedule.state.in_(_SCHEDULE_WAITING)
        )
    )
    for shas in scheduled:
        used.update(shas.values())
    return used


# A schedule in these states may still fire: its recording is kept whatever its age.
_SCHEDULE_WAITING = ("active", "paused")
_CHUNK = 500


async def purge_unused_audio(session: AsyncSession, settings: Settings, *, now: datetime) -> int:
    """Delete stored audio older than the retention period that nothing keeps any more (see the
    module's docstring); returns how many recordings went. Across cities: audio is shared by
    hash."""
    cutoff = now - timedelta(days=settings.recording_retention_days)
    disaster_cutoff = now - timedelta(days=settings.disaster_recording_retention_days)

    def cutoff_for(category: str) -> datetime:
        return disaster_cutoff if category == Category.DISASTER.value else cutoff

    old = set(
        await session.scalars(select(AudioAsset.sha256).where(AudioAsset.created_at < cutoff))
    )
    if not old:
        return 0
    kept: set[str] = set()
    # Broadcasts purge their own recordings (and keep those held as evidence).
    for shas in await session.scalars(
        select(Broadcast.audio_sha256).where(Broadcast.audio_purged_at.is_(None))
    ):
        kept.update(shas.values())
    approvals = await session.execute(
        select(
            ApprovalRequest.audio_sha256,
            ApprovalRequest.state,
            ApprovalRequest.category,
            ApprovalRequest.created_at,
            ApprovalRequest.expires_at,
        )
    )
    for shas, state, category, created_at, expires_at in approvals.tuples():
        waiting = state == "pending" and expires_at > now
        if waiting or created_at >= cutoff_for(category):
            kept.update(shas.values())
    schedules = await session.execute(
        select(Schedule.audio_sha256, Schedule.state, Schedule.category, Schedule.updated_at)
    )
    for shas, state, category, updated_at in schedules.tuples():
        if state in _SCHEDULE_WAITING or updated_at >= cutoff_for(category):
            kept.update(shas.values())
    unused = sorted(old - kept)
    for start in range(0, len(unused), _CHUNK):
        chunk = unused[start : start + _CHUNK]
        await session.execute(delete(AudioAsset).where(AudioAsset.sha256.in_(chunk)))
    await session.flush()
    if unused:
        log.info("재생되지 않은 녹음 삭제 / purged %d recordings never played", len(unused))
    return len(unused)


async def purge_residents(
    session: AsyncSession, cipher: PhoneCipher | None, *, city_id: int, now: datetime
) -> int:
    """Erase residents whose consent ran out, forget finished sign-ups, and seal again what a
    previous phone key sealed; returns how many residents were erased."""
    erased = await residents.erase_expired(session, city_id=city_id, now=now)
    await signup.purge_signups(session, city_id=city_id, now=now)
    if cipher is not None:
        await residents.reseal_numbers(session, cipher, city_id=city_id)
    if erased:
        log.info("동의 기간이 지난 주민 정보 파기 / erased %d residents past their consent", erased)
    return erased


async def hold(
    session: AsyncSession, broadcast: Broadcast, *, held: bool, reason: str | None
) -> Broadcast:
    broadcast.evidence_hold = held
    broadcast.hold_reason = reason if held else None
    await session.flush()
    return broadcast
