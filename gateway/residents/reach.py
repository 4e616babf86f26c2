"""Who may be told a notice on which channel, and their number at the moment it is sent: what
the SMS, web push, indoor receiver and fallback senders use, never the tables themselves."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.residents.crypto import PhoneCipher
from gateway.residents.models import Channel, Resident, ResidentState
from gateway.residents.service import resident_context


@dataclass(frozen=True)
class Reachable:
    resident_id: int
    village_id: int
    household_id: int | None
    language: str | None


async def reachable_residents(
    session: AsyncSession,
    city_id: int,
    village_ids: Collection[int],
    channel: Channel,
    *,
    now: datetime,
) -> list[Reachable]:
    """Residents of these villages whose consent is in force for ``channel``, at this moment
    (one withdrawn mid-broadcast is no longer here)."""
    found: list[Reachable] = []
    ids = sorted(set(village_ids))
    for start in range(0, len(ids), 900):
        rows = await session.execute(
            select(
                Resident.id,
                Resident.village_id,
                Resident.household_id,
                Resident.language,
                Resident.channels,
            ).where(
                Resident.city_id == city_id,
                Resident.village_id.in_(ids[start : start + 900]),
                Resident.state == ResidentState.ACTIVE.value,
                Resident.consent_expires_at > now,
            )
        )
        for rid, vid, hid, language, channels in rows.tuples():
            if channel.value in channels:
                found.append(Reachable(rid, vid, hid, language))
    return found


async def load_for_sending(session: AsyncSession, resident_ids: Collection[int]) -> list[object]:
    """Read these residents in a few queries, so `phone_for_sending` asks nothing more for
    them. The session keeps only weak references: hold the list while sending."""
    loaded: list[object] = []
    ids = sorted(set(resident_ids))
    for start in range(0, len(ids), 900):
        loaded += await session.scalars(
            select(Resident).where(Resident.id.in_(ids[start : start + 900]))
        )
    return loaded


async def phone_for_sending(
    session: AsyncSession, cipher: PhoneCipher, resident_id: int, *, now: datetime
) -> str | None:
    """The normalised number to send to, or None when the resident withdrew, expired or
    stopped consenting since they were chosen. Never log it."""
    resident = await session.get(Resident, resident_id)
    if (
        resident is None
        or resident.state != ResidentState.ACTIVE.value
        or resident.consent_expires_at <= now
        or resident.phone_key_id is None
        or resident.phone_ciphertext is None
    ):
        return None
    return cipher.open(
        resident.phone_key_id, resident.phone_ciphertext, context=resident_context(resident.id)
    )
