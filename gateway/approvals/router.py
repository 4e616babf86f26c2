"""HTTP routes of the two-person rule: list pending requests, hear one, approve, reject or
withdraw."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from gateway.approvals import listening, service
from gateway.approvals.schemas import (
    Approval,
    ApprovalPage,
    ApprovalRead,
    ApprovalState,
    Approved,
    Decision,
)
from gateway.approvals.visibility import APPROVERS
from gateway.auth import Anyone, Principal, Sender, allow
from gateway.broadcasts import reading as broadcast_reading
from gateway.broadcasts.ranges import ranged_response
from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.error_catalog import documented
from wire.contract import Codec

router = APIRouter(tags=["approvals"])

Approver = Annotated[Principal, allow(*APPROVERS)]


@router.get("/approvals", operation_id="list_approvals")
async def list_approvals(
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    now: NowDep,
    state: ApprovalState | None = "pending",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ApprovalPage:
    """The requests you asked for, those you may approve, and (auditors) all of them."""
    rows, total = await service.list_approvals(
        session, city, viewer=user, state=state, limit=limit, offset=offset, now=now
    )
    return ApprovalPage(
        items=[ApprovalRead.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/approvals/{approval_id}", operation_id="get_approval")
async def get_approval(
    approval_id: str, session: SessionDep, user: Anyone, city: CityDep, now: NowDep
) -> ApprovalRead:
    """404 approval_not_found also when it exists but is not yours to see."""
    approval = await service.get_approval(session, city, approval_id, viewer=user, now=now)
    return ApprovalRead.model_validate(approval)


@router.get(
    "/approvals/{approval_id}/audio",
    operation_id="get_approval_audio",
    response_class=Response,
    responses={
        200: {"content": {"audio/ogg": {}, "audio/mpeg": {}}, "description": "The whole body"},
        206: {
            "content": {"audio/ogg": {}, "audio/mpeg": {}},
            "description": "One byte range (`Range: bytes=START-END`), with `Content-Range`",
        },
        **documented("approval_not_found", "audio_not_found", "range_not_satisfiable"),
    },
)
async def get_approval_audio(
    approval_id: str,
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    now: NowDep,
    codec: Codec | None = None,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """The recording that approving would send (Opus unless `codec` says otherwise), to the same
    people who may see the request. Its `ETag` is the sha256 an approval may carry."""
    asset = await listening.approval_audio(session, city, approval_id, user, codec, now=now)
    return ranged_response(
        asset.data,
        media_type=asset.mime_type,
        etag=f'"{asset.sha256}"',
        range_header=range_header,
        if_range=if_range,
        head=False,
        headers={"Cache-Control": "private, no-store"},
    )


@router.post("/approvals/{approval_id}/approve", operation_id="approve_broadcast")
async def approve(
    approval_id: str,
    request: Request,
    session: SessionDep,
    approver: Approver,
    city: CityDep,
    now: NowDep,
    body: Approval | None = None,
) -> Approved:
    """The second person's approval: the broadcast is created and sent at once. The person who
    asked cannot approve their own request (409 own_approval); nor can the bootstrap token
    (403 bootstrap_cannot_approve), an API key, or an account the requester created, set the
    password of, gave its rights or re-enabled, or one created or given its rights after the
    request (403 approver_not_eligible). With `audio_sha256`, the audio heard must be the one
    that would play (409 approval_audio_changed). A request from a CAP alert whose `expires`
    has passed is not sent (409 approval_alert_expired)."""
    heard = body.audio_sha256 if body else None
    await listening.check_heard(session, city, approval_id, approver, heard, now=now)
    approval, started = await service.approve(
        session, state_of(request).runtime, city, approval_id, approver, body.note if body else None
    )
    summary = await broadcast_reading.summarize(session, started.broadcast, detail=False)
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
        session, state_of(request).runtime, city, approval_id, user, body.note if body else None
    )
    return ApprovalRead.model_validate(approval)
