"""HTTP routes of the officer alerts: an officer's own alerts, and acknowledging one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.auth import Principal, Role, allow
from gateway.deps import CityDep, NowDep, SessionDep
from gateway.error_catalog import documented
from gateway.officer_alerts import service
from gateway.officer_alerts.schemas import OfficerAlertPage, OfficerAlertRead

router = APIRouter(tags=["officer-alerts"])

Officer = Annotated[Principal, allow(Role.DISTRICT_OFFICER, Role.SAFETY_OFFICER)]


@router.get("/officer-alerts", operation_id="list_officer_alerts")
async def list_officer_alerts(
    session: SessionDep,
    officer: Officer,
    city: CityDep,
    unacknowledged: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OfficerAlertPage:
    """The caller's alerts of village heads' disaster alerts: unacknowledged first, newest
    first. The console polls this."""
    rows, waiting = await service.list_alerts(
        session, officer, city.id, unacknowledged=unacknowledged, limit=limit
    )
    return OfficerAlertPage(items=[OfficerAlertRead.of(r) for r in rows], unacknowledged=waiting)


@router.post(
    "/officer-alerts/{alert_id}/ack",
    operation_id="acknowledge_officer_alert",
    responses=documented("officer_alert_not_found"),
)
async def acknowledge_officer_alert(
    alert_id: int, session: SessionDep, officer: Officer, city: CityDep, now: NowDep
) -> OfficerAlertRead:
    alert = await service.acknowledge(session, officer, city.id, alert_id, now)
    return OfficerAlertRead.of(alert)
