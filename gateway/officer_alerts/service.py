"""Telling the district's officers at once when a village head sends a disaster alert.

A village head may warn their own villages of a flash flood at 2 a.m. without waiting for
anyone; in exchange, the district officers whose district holds one of those villages and the
city's safety officers see it on their console at once, until they acknowledge it, and the
audit log names the broadcast. The console is the channel today; SMS and web push, by the
channel each officer chose, come later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import ratelimits
from gateway.audit import service as audit
from gateway.auth import Principal, Role
from gateway.broadcasts.models import Broadcast
from gateway.errors import NotFound
from gateway.officer_alerts.models import OfficerAlert
from gateway.places import service as places
from gateway.users.models import User
from wire.contract import Category


def banner_text(village_names: Sequence[str]) -> str:
    """The words on the officer's console."""
    where = "·".join(village_names) if village_names else "담당 마을"
    return f"{where} 이장이 재난 방송을 보냈습니다"


async def head_disaster_sent(
    session: AsyncSession,
    city_id: int,
    broadcast: Broadcast,
    actor_role: Role | None,
    now: datetime,
) -> int:
    """After a broadcast is written: when it is a village head's disaster alert, one alert per
    officer to tell, and an audit row naming the broadcast, in the same transaction. Returns
    how many officers were told (0 for any other broadcast).

    ``actor_role`` is the sender's role when known (a request's principal); None reads it
    from the account named in ``created_by`` (a schedule firing)."""
    if broadcast.category != Category.DISASTER.value:
        return 0
    if actor_role is None:
        actor_role = await ratelimits.role_of(session, broadcast.created_by)
    if actor_role is not Role.VILLAGE_HEAD:
        return 0
    village_ids = sorted(int(v) for v in broadcast.target.get("resolved_village_ids", []))  # type: ignore[attr-defined]
    villages = await places.village_codes(session, village_ids)
    names = [villages[v][1] for v in village_ids if v in villages]
    districts = {villages[v][2] for v in village_ids if v in villages}
    officers = await _officers_of(session, city_id, districts)
    session.add_all(
        OfficerAlert(
            city_id=city_id,
            recipient_id=officer,
            broadcast_id=broadcast.id,
            sent_by=broadcast.created_by,
            village_ids=village_ids,
            village_names=names,
            created_at=now,
        )
        for officer in officers
    )
    await audit.append(
        session,
        at=now,
        city_id=city_id,
        actor=broadcast.created_by,
        role=Role.VILLAGE_HEAD.value,
        action="head_disaster_alert",
        target=f"broadcast_id={broadcast.id}",
        outcome="ok",
        details={"village_ids": village_ids, "officers_told": len(officers)},
    )
    await session.flush()
    return len(officers)


async def _officers_of(session: AsyncSession, city_id: int, district_ids: set[int]) -> list[int]:
    """The city's safety officers and the officers of any of ``district_ids``, not suspended."""
    rows = await session.execute(
        select(User.id, User.role, User.district_ids).where(
            User.city_id == city_id,
            User.role.in_((Role.SAFETY_OFFICER.value, Role.DISTRICT_OFFICER.value)),
            User.suspended_at.is_(None),
        )
    )
    return sorted(
        user_id
        for user_id, role, scope in rows
        if role == Role.SAFETY_OFFICER.value or district_ids & {int(d) for d in scope or []}
    )


async def list_alerts(
    session: AsyncSession, principal: Principal, city_id: int, *, unacknowledged: bool, limit: int
) -> tuple[list[OfficerAlert], int]:
    """The caller's alerts, the unacknowledged first and then the newest; and how many are
    still unacknowledged."""
    mine = (OfficerAlert.city_id == city_id, OfficerAlert.recipient_id == principal.user_id)
    query = select(OfficerAlert).where(*mine)
    if unacknowledged:
        query = query.where(OfficerAlert.acknowledged_at.is_(None))
    rows = await session.scalars(
        query.order_by(
            OfficerAlert.acknowledged_at.is_not(None),
            OfficerAlert.created_at.desc(),
            OfficerAlert.id.desc(),
        ).limit(limit)
    )
    waiting = await session.scalar(
        select(func.count())
        .select_from(OfficerAlert)
        .where(*mine, OfficerAlert.acknowledged_at.is_(None))
    )
    return list(rows), int(waiting or 0)


async def acknowledge(
    session: AsyncSession, principal: Principal, city_id: int, alert_id: int, now: datetime
) -> OfficerAlert:
    """Mark the caller's alert as seen; acknowledging again keeps the first time."""
    alert = await session.get(OfficerAlert, alert_id)
    if alert is None or alert.city_id != city_id or alert.recipient_id != principal.user_id:
        raise NotFound(
            "officer_alert_not_found",
            ko="알림을 찾을 수 없습니다.",
            en="No such alert for you.",
        )
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        await session.flush()
    return alert
