"""Who may fetch a recording: a speaker with a signed link, or a person who may see something
that uses it (a broadcast reaching their area, an approval request or a schedule they see)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.approvals import visibility as approvals
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import reached_villages
from gateway.schedules import reading as schedules
from gateway.schedules.models import Schedule


def _uses(column: Any, sha256: str) -> Any:
    # The hashes are JSON ({codec: sha256}); a 64-hex needle matches only itself.
    return cast(column, String).contains(sha256)


async def may_hear(session: AsyncSession, city_id: int, principal: Principal, sha256: str) -> bool:
    if len(sha256) != 64:
        return False
    for broadcast in await session.scalars(
        select(Broadcast).where(Broadcast.city_id == city_id, _uses(Broadcast.audio_sha256, sha256))
    ):
        if sha256 in broadcast.audio_sha256.values() and await scopes.touches(
            session, principal, reached_villages(broadcast)
        ):
            return True
    for approval in await session.scalars(
        select(ApprovalRequest).where(
            ApprovalRequest.city_id == city_id, _uses(ApprovalRequest.audio_sha256, sha256)
        )
    ):
        if sha256 in approval.audio_sha256.values() and await approvals.may_see(
            session, approval, principal
        ):
            return True
    for schedule in await session.scalars(
        select(Schedule).where(Schedule.city_id == city_id, _uses(Schedule.audio_sha256, sha256))
    ):
        if sha256 in schedule.audio_sha256.values() and await schedules.may_see(
            session, principal, schedule
        ):
            return True
    return False
