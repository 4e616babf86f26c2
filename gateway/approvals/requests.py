"""Approval requests as rows: writing one that waits for a second person, finding a repeat.

Below the send use case (``gateway.sending``), which decides when a request needs a second
person; approving one goes through that use case again (``approvals.service.approve``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts.service import BroadcastRequest, StoredAudio, carried, kept_texts
from gateway.deps import Runtime
from gateway.places.models import City
from wire import contract

# How long a request may wait for its second person before it lapses unsent.
APPROVAL_WINDOW = timedelta(minutes=30)


async def find_replay(
    session: AsyncSession, city: City, idempotency_key: str | None, scope: str
) -> ApprovalRequest | None:
    """The approval request an earlier request with this person's key made, if any."""
    if idempotency_key is None:
        return None
    found: ApprovalRequest | None = await session.scalar(
        select(ApprovalRequest).where(
            ApprovalRequest.city_id == city.id,
            ApprovalRequest.idempotency_scope == scope,
            ApprovalRequest.idempotency_key == idempotency_key,
        )
    )
    return found


async def request_approval(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    request: BroadcastRequest,
    audio: StoredAudio,
    *,
    principal: Principal,
    scope: str,
) -> tuple[ApprovalRequest, bool]:
    """Write the request for a second person; (the winner, True) when the same person's
    request with the same key was written first."""
    now = runtime.clock.now()
    approval = ApprovalRequest(
        id=contract.new_id(),
        city_id=city.id,
        state="pending",
        category=request.category.value,
        mode=request.mode,
        title=request.title,
        text=request.text,
        target={
            "all": request.all_villages,
            "district_ids": sorted(set(request.district_ids)),
            "village_ids": sorted(set(request.village_ids)),
            **carried(request.extra_target),
            **kept_texts(request),
        },
        audio_sha256=dict(audio.sha256),
        source_sha256=audio.source_sha256,
        duration_ms=audio.duration_ms,
        expires_in_s=request.expires_in_s,
        requested_by=principal.actor,
        requested_user_id=principal.user_id,
        created_at=now,
        expires_at=now + APPROVAL_WINDOW,
        idempotency_key=request.idempotency_key,
        idempotency_scope=scope,
    )
    try:
        async with session.begin_nested():
            session.add(approval)
            await session.flush()
    except IntegrityError:
        winner = await find_replay(session, city, request.idempotency_key, scope)
        if winner is None:
            raise
        return winner, True
    return approval, False
