"""HTTP routes of enrollment: an administrator issues a speaker's one-time code; its installer
redeems it for the speaker's configuration."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.auth import Admin
from gateway.deps import CityDep, NowDep, SealDep, SessionDep, state_of
from gateway.enrollment import service
from gateway.enrollment.schemas import (
    EnrollmentCodeIssued,
    EnrollmentRedeem,
    EnrollmentRedeemed,
)
from gateway.error_catalog import documented
from gateway.forwarding import client_address

router = APIRouter(tags=["devices"])
# Codes and passwords must not sit in any cache on the way.
_NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "/speakers/{speaker_id}/enrollment",
    status_code=201,
    operation_id="issue_enrollment_code",
    responses=documented("speaker_not_found"),
)
async def issue_enrollment_code(
    speaker_id: int,
    session: SessionDep,
    user: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
    response: Response,
) -> EnrollmentCodeIssued:
    """A one-time code to install this speaker with (`maeul speaker enroll --code`), shown this
    once and valid for `GATEWAY_ENROLLMENT_CODE_TTL_S` (a day by default). A new code ends the
    speaker's earlier ones. Redeeming it issues the speaker a new broker password."""
    response.headers.update(_NO_STORE)
    settings = state_of(request).settings
    issued = await service.issue_code(
        session, settings, city, speaker_id, issued_by=user.name, now=now
    )
    request.state.audit_target = {"code": issued.speaker_code}
    return issued


@router.post(
    "/enrollment/redeem",
    operation_id="redeem_enrollment_code",
    responses=documented(
        "invalid_enrollment_code",
        "enrollment_code_used",
        "enrollment_code_expired",
        "enrollment_throttled",
        "invalid_receipt_key",
        "invalid_receipt_key_proof",
        "username_taken",
        "broker_unavailable",
    ),
)
async def redeem_enrollment_code(
    body: EnrollmentRedeem,
    session: SessionDep,
    city: CityDep,
    now: NowDep,
    seal: SealDep,
    request: Request,
    response: Response,
) -> EnrollmentRedeemed:
    """Redeem a speaker's one-time code: no login, the code is the secret. The answer holds the
    speaker's new broker password and its provisioning document (broker, topics, key ring);
    with `receipt_public_key` and its proof, the speaker's own receipt key is enrolled too.
    A code works once, before it expires (410 `enrollment_code_used`,
    `enrollment_code_expired`); wrong codes slow their source down as failed logins do (429
    `enrollment_throttled`). When anything fails, nothing changed and the code still works."""
    response.headers.update(_NO_STORE)
    state = state_of(request)
    return await service.redeem(
        session,
        state.sessions,
        state.settings,
        city,
        body,
        now=now,
        source=client_address(request, state.settings.trusted_networks),
        seal=seal,
        request=request,
    )
