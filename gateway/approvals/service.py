"""The two-person rule: a disaster broadcast to more than one district, or to the whole city,
is sent only when a second authorised person approves it. Cancelling stays one-person."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.approvals import eligibility, visibility
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts import service as broadcasts
from gateway.errors import Conflict
from gateway.places import service as places
from gateway.places.models import City
from gateway.speakers import service as speakers
from wire import contract
from wire.contract import Category

# How long a request may wait for its second person before it lapses unsent.
APPROVAL_WINDOW = timedelta(minutes=30)


async def needs_approval(
    session: AsyncSession, request: broadcasts.BroadcastRequest, target: places.ResolvedTarget
) -> bool:
    # The bootstrap token is the deployment's root credential (it can create a second account
    # anyway); people and integrations, which act as users, always need the second person.
    principal = request.principal
    if principal is None or principal.user_id is None or request.category is not Category.DISASTER:
        return False
    if target.all:
        return True
    villages = await places.village_codes(session, target.village_ids)
    return len({district for _code, _name, district in villages.values()}) > 1


async def find_replay(
    session: AsyncSession, city: City, idempotency_key: str | None
) -> ApprovalRequest | None:
    if idempotency_key is None:
        return None
    found: ApprovalRequest | None = await session.scalar(
        select(ApprovalRequest).where(
            ApprovalRequest.city_id == city.id,
            ApprovalRequest.idempotency_key == idempotency_key,
        )
    )
    return found


async def request_approval(
    session: AsyncSession,
    runtime: broadcasts.Runtime,
    city: City,
    request: broadcasts.BroadcastRequest,
    audio: broadcasts.StoredAudio,
) -> ApprovalRequest:
    assert request.principal is not None
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
        },
        audio_sha256=dict(audio.sha256),
        source_sha256=audio.source_sha256,
        duration_ms=audio.duration_ms,
        expires_in_s=request.expires_in_s,
        requested_by=request.principal.actor,
        requested_user_id=request.principal.user_id,
        created_at=now,
        expires_at=now + APPROVAL_WINDOW,
        idempotency_key=request.idempotency_key,
    )
    session.add(approval)
    await session.flush()
    return approval


async def get_approval(
    session: AsyncSession, city: City, approval_id: str, *, viewer: Principal, now: datetime
) -> ApprovalRequest:
    """The request, if ``viewer`` may see it (else the same 404 as for an unknown id)."""
    row = await session.get(ApprovalRequest, approval_id) if len(approval_id) == 32 else None
    if row is None or row.city_id != city.id:
        raise visibility.not_found(approval_id)
    await visibility.ensure_visible(session, row, viewer)
    await _lapse(session, city, now)
    return row


async def _lapse(session: AsyncSession, city: City, now: datetime) -> None:
    """Requests nobody approved in time are marked expired (they were never sent)."""
    await session.execute(
        update(ApprovalRequest)
        .where(
            ApprovalRequest.city_id == city.id,
            ApprovalRequest.state == "pending",
            ApprovalRequest.expires_at <= now,
        )
        .values(state="expired", decided_at=now)
        .execution_options(synchronize_session="fetch")
    )


async def list_approvals(
    session: AsyncSession,
    city: City,
    *,
    viewer: Principal,
    state: str | None,
    limit: int,
    offset: int,
    now: datetime,
) -> tuple[list[ApprovalRequest], int]:
    await _lapse(session, city, now)
    query = select(ApprovalRequest).where(
        ApprovalRequest.city_id == city.id,
        await visibility.visible(session, city, viewer, state),
    )
    if state is not None:
        query = query.where(ApprovalRequest.state == state)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(ApprovalRequest.created_at.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def _is_requester(approval: ApprovalRequest, principal: Principal) -> bool:
    if principal.user_id is not None and approval.requested_user_id is not None:
        return principal.user_id == approval.requested_user_id
    return principal.actor == approval.requested_by


def _pending(approval: ApprovalRequest) -> None:
    if approval.state != "pending":
        raise Conflict(
            "approval_not_pending",
            ko="이미 처리되었거나 기한이 지난 승인 요청입니다.",
            en=f"The approval request is {approval.state}, no longer pending.",
        )


def _requested(approval: ApprovalRequest) -> tuple[bool, tuple[int, ...], tuple[int, ...]]:
    target = approval.target
    districts = target.get("district_ids", [])
    villages = target.get("village_ids", [])
    assert isinstance(districts, list)
    assert isinstance(villages, list)
    return bool(target.get("all")), tuple(map(int, districts)), tuple(map(int, villages))


async def _resolved(
    session: AsyncSession, city: City, approval: ApprovalRequest
) -> places.ResolvedTarget:
    all_villages, district_ids, village_ids = _requested(approval)
    return await places.resolve_targets(
        session,
        city,
        all_villages=all_villages,
        district_ids=district_ids,
        village_ids=village_ids,
    )


async def approve(
    session: AsyncSession,
    runtime: broadcasts.Runtime,
    city: City,
    approval_id: str,
    principal: Principal,
    note: str | None,
) -> tuple[ApprovalRequest, broadcasts.Started]:
    """The second person says yes: the broadcast is created and goes out at once."""
    now = runtime.clock.now()
    approval = await get_approval(session, city, approval_id, viewer=principal, now=now)
    _pending(approval)
    if _is_requester(approval, principal):
        raise Conflict(
            "own_approval",
            ko="자신이 요청한 재난 방송은 직접 승인할 수 없습니다. "
            "다른 담당자의 승인이 필요합니다.",
            en="You cannot approve your own disaster broadcast: a second person must.",
        )
    await eligibility.check_approver(session, approval, principal)
    target = await _resolved(session, city, approval)
    category = Category(approval.category)
    await scopes.authorize_act(session, principal, category, target.village_ids)
    recipients = await speakers.speakers_for(
        session, city.id, village_ids=None if target.all else target.village_ids
    )
    _, requested_districts, requested_villages = _requested(approval)
    request = broadcasts.BroadcastRequest(
        category=category,
        title=approval.title,
        text=approval.text,
        all_villages=target.all,
        district_ids=requested_districts,
        village_ids=requested_villages,
        expires_in_s=approval.expires_in_s,
        idempotency_key=f"approval:{approval.id}",
        created_by=approval.requested_by,
        mode=approval.mode,
        extra_target={"approval_id": approval.id, "approved_by": principal.actor},
    )
    audio = broadcasts.StoredAudio(
        source_sha256=approval.source_sha256,
        duration_ms=approval.duration_ms,
        sha256=approval.audio_sha256,
    )
    started = await broadcasts.record_broadcast(
        session, runtime, city, request, target, recipients, audio
    )
    approval.state = "approved"
    approval.decided_by = principal.actor
    approval.decided_at = now
    approval.decision_note = note
    approval.broadcast_id = started.broadcast.id
    await session.flush()
    return approval, started


async def reject(
    session: AsyncSession,
    runtime: broadcasts.Runtime,
    city: City,
    approval_id: str,
    principal: Principal,
    note: str | None,
) -> ApprovalRequest:
    """A second person says no, or the requester withdraws it: nothing is ever sent."""
    now = runtime.clock.now()
    approval = await get_approval(session, city, approval_id, viewer=principal, now=now)
    _pending(approval)
    if not _is_requester(approval, principal):
        target = await _resolved(session, city, approval)
        await scopes.authorize_act(
            session, principal, Category(approval.category), target.village_ids
        )
    approval.state = "withdrawn" if _is_requester(approval, principal) else "rejected"
    approval.decided_by = principal.actor
    approval.decided_at = now
    approval.decision_note = note
    await session.flush()
    return approval
