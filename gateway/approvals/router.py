"""HTTP routes of the two-person rule: list pending requests, approve, reject or withdraw."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from gateway.approvals import service
from gateway.approvals.schemas import ApprovalPage, ApprovalRead, ApprovalState, Approved, Decision
from gateway.auth import Anyone, Principal, Role, Sender, allow
from gateway.broadcasts import service as broadcasts
from gateway.db import SessionDep
from gateway.places.service import CityDep, NowDep

router = APIRouter(tags=["approvals"])

Approver = Annotated[Principal, allow(Role.CITY_ADMIN, Role.SAFETY_OFFICER, Role.DISTRICT_OFFICER)]


def _runtime(request: Request) -> broadcasts.Runtime:
    runtime: broadcasts.Runtime = request.app.state.runtime
    return runtime


@router.get("/approvals", operation_id="list_approvals")
async def list_approvals(
    session: SessionDep,
    _user: Anyone,
    city: CityDep,
    now: NowDep,
    state: ApprovalState | None = "pending",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ApprovalPage:
    rows, total = await service.list_approvals(
        session, city, state=state, limit=limit, offset=offset, now=now
    )
    return ApprovalPage(
        items=[ApprovalRead.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/approvals/{approval_id}", operation_id="get_approval")
async def get_approval(
    approval_id: str, session: SessionDep, _user: Anyone, city: CityDep, now: NowDep
) -> ApprovalRead:
    approval = await service.get_approval(session, city, approval_id, now=now)
    return ApprovalRead.model_validate(approval)


@router.post("/approvals/{approval_id}/approve", operation_id="approve_broadcast")
async def approve(
    approval_id: str,
    request: Request,
    session: SessionDep,
    approver: Approver,
    city: CityDep,
    body: Decision | None = None,
) -> Approved:
    """The second person's approval: the broadcast is created and sent at once. The person who
    asked cannot approve their own request (409 own_approval)."""
    approval, started = await service.approve(
        session, _runtime(request), city, approval_id, approver, body.note if body else None
    )
    summary = await broadcasts.summarize(session, started.broadcast, detail=False)
    return Approved(approval=ApprovalRead.model_validate(approval), broadcast=summary)


@router.post("/approvals/{approval_id}/reject", operation_id="reject_broadcast")
async def reject(
    approval_id: str,
    request: Request,
    session: SessionDep,
    user: Sender,
    city: CityDep,
    body: Decision | None = None,
) -> ApprovalRead:
    """Refuse it (a second authorised person) or withdraw it (the one who asked)."""
    approval = await service.reject(
        session, _runtime(request), city, approval_id, user, body.note if body else None
    )
    return ApprovalRead.model_validate(approval)
