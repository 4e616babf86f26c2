"""Shapes of the approval API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.broadcasts.schemas import BroadcastSummary
from wire.contract import Category

ApprovalState = Literal["pending", "approved", "rejected", "withdrawn", "expired"]


class ApprovalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    state: ApprovalState
    category: Category
    mode: str
    title: str | None
    text: str | None
    target: dict[str, object]
    duration_ms: int
    requested_by: str
    created_at: datetime
    expires_at: datetime = Field(description="Not approved by then: it lapses, never sent")
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    broadcast_id: str | None


class ApprovalPage(BaseModel):
    items: list[ApprovalRead]
    total: int
    limit: int
    offset: int


class Decision(BaseModel):
    note: str | None = Field(default=None, max_length=300)


class Approved(BaseModel):
    approval: ApprovalRead
    broadcast: BroadcastSummary
