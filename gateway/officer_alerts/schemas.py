"""Shapes of the officer alerts API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from gateway.officer_alerts.models import OfficerAlert
from gateway.officer_alerts.service import banner_text


class OfficerAlertRead(BaseModel):
    id: int
    broadcast_id: str
    sent_by: str = Field(description="The village head who sent the disaster alert")
    village_ids: list[int]
    village_names: list[str]
    message: str = Field(description="The banner's words, in Korean")
    created_at: datetime
    acknowledged_at: datetime | None

    @classmethod
    def of(cls, alert: OfficerAlert) -> OfficerAlertRead:
        return cls(
            id=alert.id,
            broadcast_id=alert.broadcast_id,
            sent_by=alert.sent_by,
            village_ids=list(alert.village_ids),
            village_names=list(alert.village_names),
            message=banner_text(alert.village_names),
            created_at=alert.created_at,
            acknowledged_at=alert.acknowledged_at,
        )


class OfficerAlertPage(BaseModel):
    items: list[OfficerAlertRead]
    unacknowledged: int = Field(description="How many of the caller's alerts await a 확인")
