"""Suspending a person stops what they left running, in the suspension's own transaction.

`service.suspend` refuses the person's credentials; this adds what they set going before:
every active schedule they made is paused (nothing more goes out in their name), and every live
session they are speaking in is marked for ending (the replica streaming it ends it on the
speakers within a second). Kept apart from `service`, which the low-level slices (auth,
schedules, live) read from, so the users slice does not import them back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.live import service as live
from gateway.places.models import City
from gateway.schedules import pause
from gateway.users import logins, service
from gateway.users.models import User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suspended:
    user: User
    schedules_paused: int
    live_sessions_ended: int


async def suspend(
    session: AsyncSession,
    city: City,
    actor: Principal,
    user: User,
    reason: str,
    *,
    now: datetime,
) -> Suspended:
    """Suspend ``user``; pause their schedules and end their live sessions. Suspending again
    stops anything left (a schedule or session that slipped through a race)."""
    await service.suspend(session, actor, user, reason, now=now)
    owner = logins.principal_of(user).actor
    paused = await pause.pause_owned_by(
        session, city.id, owner, reason=pause.OWNER_SUSPENDED, now=now
    )
    ended = await live.end_sessions_of(
        session, city.id, owner, reason=pause.OWNER_SUSPENDED, now=now
    )
    withdrawn = await _withdraw_requests(session, city.id, user, actor, now)
    log.info(
        "account %s suspended: %d schedule(s) paused, %d live session(s) ended, "
        "%d approval request(s) withdrawn",
        owner,
        paused,
        ended,
        withdrawn,
    )
    return Suspended(user=user, schedules_paused=paused, live_sessions_ended=ended)


async def _withdraw_requests(
    session: AsyncSession, city_id: int, user: User, actor: Principal, now: datetime
) -> int:
    """The person's disaster alerts still waiting for a second person are withdrawn: nobody can
    approve them into the air in a suspended person's name."""
    result = await session.execute(
        update(ApprovalRequest)
        .where(
            ApprovalRequest.city_id == city_id,
            ApprovalRequest.requested_user_id == user.id,
            ApprovalRequest.state == "pending",
        )
        .values(
            state="withdrawn",
            decided_by=actor.actor,
            decided_at=now,
            decision_note=pause.OWNER_SUSPENDED,
        )
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)
