"""HTTP route of the SMS slice: the delivery reports Kannel calls back with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from gateway.deps import NowDep, SessionDep, state_of
from gateway.error_catalog import documented
from gateway.sms import service

router = APIRouter(tags=["sms"])


class SmsReportRead(BaseModel):
    id: str
    status: str


@router.get(
    "/sms/dlr",
    operation_id="record_sms_delivery_report",
    responses=documented(
        "sms_report_forged",
        "sms_report_status_unknown",
        "sms_report_not_applicable",
        "sms_not_found",
    ),
)
async def record_delivery_report(
    request: Request,
    session: SessionDep,
    now: NowDep,
    id: Annotated[str, Query(min_length=1, max_length=32)],
    sig: Annotated[str, Query(min_length=1, max_length=128)],
    status: int,
) -> SmsReportRead:
    """Kannel's delivery report for one SMS (its dlr-url). No login: the link's signature,
    made by this gateway when it sent the message, is the only proof it came from Kannel."""
    new = await service.record_report(
        session,
        getattr(state_of(request), "sms_links", None),
        message_id=id,
        signature=sig,
        status=status,
        now=now,
    )
    return SmsReportRead(id=id, status=new)
