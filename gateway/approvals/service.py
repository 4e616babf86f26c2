"""The two-person rule: a disaster broadcast to more than one district, or to the whole city,
is sent only when a second authorised person approves it. Cancelling stays one-person."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.approvals import eligibility, visibility
from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.broadcasts import service as broadcasts
from gateway.broadcasts.models import Broadcast
from gateway.deps import Runtime
from gateway.errors import Conflict
from gateway.places import service as places
from gateway.places.models import City
from gateway.sending import service as sending
from gateway.sending.rules import Path as SendPath
from gateway.sending.rules import Refuse, Replay, Send
from wire.contract import Category


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
    runtime: Runtime,
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
    all_villages, requested_districts, requested_villages = _requested(approval)
    expires_in_s = approval.expires_in_s
    ends = broadcasts.ends_at(approval.target)
    if ends is not None:
        if ends <= now:
            raise Conflict(
                "approval_alert_expired",
                ko="이 요청의 CAP 경보가 이미 만료되어 방송할 수 없습니다.",
                en="The CAP alert this request carries has expired: it is not broadcast.",
            )
        # The broadcast ends with its alert, not the approval's delay later.
        expires_in_s = max(1, int((ends - now).total_seconds()))
    request = broadcasts.BroadcastRequest(
        category=Category(approval.category),
        title=approval.title,
        text=approval.text,
        all_villages=all_villages,
        district_ids=requested_districts,
        village_ids=requested_villages,
        expires_in_s=expires_in_s,
        idempotency_key=f"approval:{approval.id}",
        created_by=approval.requested_by,
        mode=approval.mode,
        extra_target={
            "approval_id": approval.id,
            "approved_by": principal.actor,
            **broadcasts.carried(approval.target),
        },
        texts=broadcasts.texts_of(approval.target),
    )
    # The send rules, with the approver's rights; the broadcast counts as the requester's.
    wanted = sending.SendRequest(
        path=SendPath.APPROVAL,
        broadcast=request,
        principal=principal,
        source_sha256=approval.source_sha256,
        at=now,
        scope=sending.GATEWAY_SCOPE,
        approved=True,
    )
    decision = await sending.plan(session, runtime, city, wanted)
    if isinstance(decision, Refuse):
        raise decision.error
    if isinstance(decision, Replay):
        assert isinstance(decision.found, Broadcast)
        started = broadcasts.Started(decision.found, replayed=True)
    else:
        # Approved alerts are disaster alerts, which quiet hours never hold.
        assert isinstance(decision, Send)
        audio = broadcasts.StoredAudio(
            source_sha256=approval.source_sha256,
            duration_ms=approval.duration_ms,
            sha256=approval.audio_sha256,
        )
        sent = await sending.execute(session, runtime, city, wanted, decision, audio)
        assert isinstance(sent, broadcasts.Started)
        started = sent
        await broadcasts.replace_on_send(session, runtime, city, started.broadcast)
    approval.state = "approved"
    approval.decided_by = principal.actor
    approval.decided_at = now
    approval.decision_note = note
    approval.broadcast_id = started.broadcast.id
    await session.flush()
    return approval, started


async def reject(
    session: AsyncSession,
    runtime: Runtime,
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
